#!/usr/bin/env python3
"""sweep.py - injected I/O errors (libiofault.so) at every call of the checkpoint, event and state writes.

    sweep.py TARGET --shim libiofault.so --spottrain BIN --spotlaunch BIN --config tiny.ini
             --data-dir DIR --work DIR [--max-n N]

TARGET is ckpt (the worker's checkpoint files and final.h5), events (the
worker's events.jsonl) or state (the launcher's launcher/state.json). For each
call kind (open, write, fsync, rename, close) and N = 1, 2, ... the program
runs with the N-th such call on the target's files failing (EIO, ENOSPC and
EDQUOT in turn) until N passes the number of calls the run makes. After each
run: the exit code is the documented one (0 when the failed call could not
matter, else 74), a failure that changed the outcome is named in the error
output (the errno's text and the file), every checkpoint under a final name
validates (`spottrain inspect`), final.h5 too when present, no .tmp file is
left, and events.jsonl (each line) and state.json stay readable. Exit 0: all
held; 1: a run broke a rule (its command and output are printed).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fleet"))
import fleet as fl  # noqa: E402

OPS = ("open", "write", "fsync", "rename", "close")
ERRNOS = (("EIO", "Input/output error"), ("ENOSPC", "No space left on device"), ("EDQUOT", "Disk quota exceeded"))
PATHS = {"ckpt": "*/checkpoints*|*/final.h5*", "events": "*/events.jsonl", "state": "*/launcher/state.json*"}


def worker_argv(a, run_dir):
    return [a.spottrain, "train", "--config", a.config, "--data-dir", a.data_dir, "--threads", "1",
            "--max-steps", "30", "--run-dir", run_dir, "--set", "checkpoint.every_steps=10",
            "--set", "checkpoint.keep=100", "--set", "train.eval_each_epoch=false"]


def run_worker(a, run_dir, env):
    """One worker process (no mpirun: its own calls are the ones counted)."""
    return subprocess.run(worker_argv(a, run_dir), env=env, capture_output=True, text=True, timeout=120)


def run_launcher(a, work, run_dir, env):
    """spotlaunch on a fake fleet of one node (tests/fleet), the shim in its environment."""
    f = fl.Fleet(os.path.join(work, "sim"))
    f.add("node0")
    e = f.env()
    e.update({k: v for k, v in env.items() if k.startswith("IOFAULT_") or k == "LD_PRELOAD"})
    argv = [a.spotlaunch, "run", "--hostfile", f.hostfile, "--min-np", "1", "--max-np", "1", "--run-dir", run_dir,
            "--backoff", "0.2", "--kill-grace", "2", "--progress-timeout", "30", "--start-timeout", "40",
            "--max-failures", "2", "--wait-timeout", "5", "--probe-timeout", "0"]
    argv += ["--mpirun-arg=" + m for m in f.mpirun_args()] + ["--"] + worker_argv(a, run_dir)
    try:
        r = subprocess.run(argv, env=e, capture_output=True, text=True, timeout=120)
        time.sleep(0.2)
        left = f.pids()
        return r, left
    finally:
        f.cleanup()


def validates(a, path):
    return subprocess.run([a.spottrain, "inspect", path], capture_output=True).returncode == 0


def check(a, target, run_dir, r, injected, left):
    """The rules of the docstring for one run; returns a list of broken ones."""
    bad = []
    out = r.stdout + r.stderr
    if r.returncode not in (0, 74):
        bad.append("exit %d, expected 0 or 74" % r.returncode)
    words = injected.split()
    # a checkpoint run may read a file (a harmless failed call); every call on the other targets writes
    if r.returncode == 74 or target != "ckpt":
        if not any(text in out for _, text in ERRNOS if _ == words[2]):
            bad.append("exit %d without the error's text (%s)" % (r.returncode, words[2]))
        if words[3] not in out and os.path.dirname(words[3]) not in out:
            bad.append("exit %d without naming the file %s" % (r.returncode, words[3]))
    if target != "state" and r.returncode == 0 and not os.path.exists(os.path.join(run_dir, "final.h5")):
        bad.append("exit 0 without final.h5")
    for p in sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.h5"))) + \
            glob.glob(os.path.join(run_dir, "final.h5")):
        if not validates(a, p):
            bad.append("%s is under its final name and does not validate" % os.path.basename(p))
    tmps = glob.glob(os.path.join(run_dir, "checkpoints", "*.tmp")) + glob.glob(os.path.join(run_dir, "*.tmp"))
    if tmps:
        bad.append("left behind: %s" % tmps)
    ev = os.path.join(run_dir, "events.jsonl")
    if os.path.exists(ev):
        with open(ev) as fh:
            for i, line in enumerate(fh, 1):
                try:
                    json.loads(line)
                except ValueError:
                    bad.append("events.jsonl line %d does not parse: %r" % (i, line[:120]))
    st = os.path.join(run_dir, "launcher", "state.json")
    if target == "state" and os.path.exists(st):
        s = subprocess.run([a.spotlaunch, "status", run_dir, "--json"], capture_output=True, text=True)
        try:
            with open(st) as fh:
                json.load(fh)
        except ValueError as e:
            bad.append("state.json unreadable: %s" % e)
        if s.returncode != 0:
            bad.append("spotlaunch status exit %d: %s" % (s.returncode, s.stderr[-300:]))
    if left:
        bad.append("%d process(es) left behind" % len(left))
    return bad


def sweep(a):
    base = dict(os.environ, OMP_NUM_THREADS="1", LD_PRELOAD=a.shim, IOFAULT_PATH=PATHS[a.target])
    runs, injected_runs, failures = 0, 0, []
    outcomes = {}
    for op in OPS:
        for n in range(1, a.max_n + 1):
            code, text = ERRNOS[(n - 1) % len(ERRNOS)]
            work = os.path.join(a.work, "%s-%s-%d" % (a.target, op, n))
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)
            run_dir = os.path.join(work, "run")
            log = os.path.join(work, "iofault.log")
            env = dict(base, IOFAULT_OPS=op, IOFAULT_N=str(n), IOFAULT_ERRNO=code, IOFAULT_LOG=log)
            left = []
            if a.target == "state":
                r, left = run_launcher(a, work, run_dir, env)
            else:
                r = run_worker(a, run_dir, env)
            runs += 1
            try:
                with open(log) as fh:
                    injected = fh.readline().strip()
            except FileNotFoundError:
                injected = ""
            if not injected:  # past the last call of this kind
                shutil.rmtree(work, ignore_errors=True)
                break
            injected_runs += 1
            bad = check(a, a.target, run_dir, r, injected, left)
            outcomes.setdefault(op, []).append(r.returncode)
            if bad:
                failures.append((op, n, code, bad))
                print("FAIL %s %s N=%d %s (%s): %s" % (a.target, op, n, code, injected, "; ".join(bad)))
                print("---- output tail\n" + (r.stdout + r.stderr)[-1500:])
            else:
                shutil.rmtree(work, ignore_errors=True)
    print("RESULT %s %s %s" % (a.target, "PASS" if not failures else "FAIL",
                               json.dumps({"runs": runs, "faults_injected": injected_runs,
                                           "exit_codes_per_op": outcomes, "failures": len(failures)})))
    return 0 if not failures and injected_runs > 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=sorted(PATHS))
    for k in ("--shim", "--spottrain", "--spotlaunch", "--config", "--data-dir", "--work"):
        ap.add_argument(k, required=True)
    ap.add_argument("--max-n", type=int, default=40)
    a = ap.parse_args()
    for k in ("shim", "spottrain", "spotlaunch", "config", "data_dir", "work"):
        setattr(a, k, os.path.abspath(getattr(a, k)))
    return sweep(a)


if __name__ == "__main__":
    sys.exit(main())
