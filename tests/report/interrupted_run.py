#!/usr/bin/env python3
"""interrupted_run.py - a simulated spot run with two interruptions, for `spotlaunch report`.

    interrupted_run.py --spotlaunch BIN --spottrain BIN --mock-imds BIN --config tiny.ini --data-dir DIR
                       --work DIR --out DIR

spotlaunch trains configs/tiny.ini (global batch 256, 3 epochs) on a fake fleet
of four nodes (tests/fleet/fleet.py). Faults are injected when rank 0's
heartbeat reaches a step, never after fixed sleeps:

1. at step 150 of generation 1: an AWS spot interruption notice on node1,
   served by node1's own mock metadata service (tests/mock_imds; every fake
   node has one, rsh_shim_imds.sh hands its URL to the node's processes) and
   seen by the workers' watcher: the agreed stop. node1 is killed and removed
   2 s after the notice event;
2. at step 425 of generation 2: node2 is killed without notice (a failure:
   recovery from the periodic checkpoint of step 400), removed from the hostfile at once.

The run finishes on node0 and node3. Its events.jsonl and metrics.jsonl are
copied to --out (tests/report/fixtures/two_interruptions
was recorded this way). Exit status 0 when the run finished with two
interruptions, else 1.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fleet"))
import scenarios as sc  # noqa: E402  (Run: fleet, launcher argv, waiting on the heartbeat)


NODES = ("node0", "node1", "node2", "node3")
SHIM = os.path.join(HERE, "rsh_shim_imds.sh")


class Mocks:
    """One mock metadata service per fake node (127.0.0.1 only), stepping with the run's heartbeat."""

    def __init__(self, binary, fleet, run_dir):
        self.procs = {}
        self.ports = {}
        os.makedirs(run_dir, exist_ok=True)
        for n in NODES:
            d = fleet.node_dir(n)
            port_file = os.path.join(d, "imds.port")
            self.procs[n] = subprocess.Popen([binary, "--port", "0", "--port-file", port_file, "--step-file",
                                              os.path.join(run_dir, "heartbeat"), "--vm-name", n],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            port = sc.fl.wait_for(lambda: _read(port_file), 10, "the mock of %s" % n, poll=0.02)
            self.ports[n] = int(port)
            with open(os.path.join(d, "metadata_url"), "w") as fh:
                fh.write("http://127.0.0.1:%d\n" % self.ports[n])

    def control(self, node, what):
        url = "http://127.0.0.1:%d/_control/%s" % (self.ports[node], what)
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5) as r:
            return json.loads(r.read().decode())

    def close(self):
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _read(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def record(run, out, mocks):
    f = run.fleet
    f.add(*NODES)
    # the fleet's mpirun flags with the shim that hands each node its metadata URL
    flags = sc.fl.Fleet.mpirun_args()
    flags[flags.index("plm_rsh_agent") + 1] = SHIM
    f.mpirun_args = lambda: list(flags)
    worker = run.worker(100000, 3, ["train.global_batch=256", "spot.provider=aws", "spot.poll_ms=50"])
    mocks.control("node1", "notice?provider=aws&at_step=150")
    run.start(run.launcher_argv(2, 4, worker))
    events = os.path.join(run.run_dir, "events.jsonl")
    sc.fl.wait_for(lambda: any(e.get("event") == "notice" for e in sc.fl.read_jsonl(events)), 60,
                   "the notice event of node1")
    time.sleep(2)
    f.kill("node1")
    f.remove("node1")
    # mid-interval (checkpoints every 50 steps), so the checkpoint of step 400 is durable
    run.wait_step(425, generation=2)
    # the autoscaler drops the dead node at once: were it still listed when the launcher
    # re-forms (a second or so later), the next world would start on it, and how many
    # generations the run takes would depend on the machine's speed
    f.kill("node2")
    f.remove("node2")
    rc = run.wait(240)
    assert rc == 0, "launcher exit %d" % rc
    st = run.status()
    assert st["finished"], st
    assert st["interruptions"] == 2, "interruptions: %s" % st["incidents"]
    kinds = [x["kind"] for x in st["incidents"]]
    assert kinds == ["notice", "failure"], kinds
    os.makedirs(out, exist_ok=True)
    for name in ("events.jsonl", "metrics.jsonl"):
        shutil.copyfile(os.path.join(run.run_dir, name), os.path.join(out, name))
    return {"world": [(w["generation"], w["np"], w["hosts"], w["outcome"]) for w in st["world"]],
            "incidents": [{k: x[k] for k in ("kind", "last_step", "resumed_step", "steps_lost", "total_s")}
                          for x in st["incidents"]],
            "goodput": st["goodput"], "wall_s": st["wall_s"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k in ("--spotlaunch", "--spottrain", "--mock-imds", "--config", "--data-dir", "--work", "--out"):
        ap.add_argument(k, required=True)
    args = ap.parse_args()
    for k in ("spotlaunch", "spottrain", "mock_imds", "config", "data_dir", "work", "out"):
        setattr(args, k, os.path.abspath(getattr(args, k)))
    run = sc.Run("interrupted", args)
    mocks = None
    ok = False
    try:
        mocks = Mocks(args.mock_imds, run.fleet, run.run_dir)
        result = record(run, args.out, mocks)
        ok = True
    except Exception as e:  # report, then fail
        traceback.print_exc()
        for n in range(1, run.launches + 1):
            try:
                sys.stderr.write("---- launcher-%d.err (tail)\n%s\n" % (n, run.stderr(n)[-6000:]))
            except OSError:
                pass
        result = {"error": str(e)}
    finally:
        if mocks:
            mocks.close()
        run.close()
    print("RECORDED %s %s" % ("PASS" if ok else "FAIL", json.dumps(result)))
    if ok:
        shutil.rmtree(run.work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
