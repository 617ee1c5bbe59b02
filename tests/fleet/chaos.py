#!/usr/bin/env python3
"""chaos.py - the chaos soak: spotlaunch on the fake fleet under a seeded random fault schedule.

    chaos.py --generations G [--seed S] --spotlaunch BIN --spottrain BIN --mock-imds BIN
             --config tiny.ini --data-dir DIR --work DIR [--shim libiofault.so] [--steps N] [--keep]

A fleet of eight fake nodes (fleet.py), four in the hostfile at first, each with
its own mock metadata service (tests/mock_imds, handed to the node's processes
by tests/report/rsh_shim_imds.sh), trains configs/tiny.ini under spotlaunch
while this program injects faults until the run has had G generations. The
faults come in rounds, each round every kind once in an order drawn from the
seed (random.Random(seed)); each fault is injected when rank 0's heartbeat is a
random number of steps into the current generation, never after fixed sleeps:

  notice    an interruption notice from the mock metadata service of one node
            of the world, for the provider the world's workers watch (aws, gcp
            and azure in turn: each launcher start uses the next one); the node
            is reclaimed (killed, dropped from the hostfile) once the world stopped
  kill      kill -9 of a node's processes, dropped from the hostfile
  freeze    SIGSTOP of a node's processes (it stays listed, launches on it hang):
            found by --progress-timeout; reclaimed once the next world runs
  launcher  kill -9 of spotlaunch, started again (it adopts the running mpirun)
  volume    the run directory's volume (a tmpfs) full for a while: the workers
            and the launcher exit 74; space comes back and the launcher is started
            again (skipped without a tmpfs mount)
  damage    the newest checkpoint damaged, then a node killed: the next world
            must resume from an older, valid one
  slowdisk  every checkpoint write and fsync 300 ms slower for a while (the
            LD_PRELOAD shim tests/iofault, --shim; skipped without it)
  leave     a live node dropped from the hostfile (scale-down by agreed stop)
  comeback  a node that left (or was reclaimed) listed again (scale-up)

At the end the test itself checks: the launcher finished (exit 0); every
sample of every epoch was seen exactly once by the worlds whose work reached
final.h5 (SPOTTRAIN_SAMPLE_TRACE, checked along fleet.exactly_once_chain);
final parameters bit-identical to an uninterrupted run; no process of the
fleet left; every fault's effect within its bound (and the launcher's frozen
detection within --progress-timeout + 1 s); every file under a final name in
the run directory valid (checkpoints and final.h5 with `spottrain inspect`,
except the ones damaged on purpose and not rewritten since; state.json and
events.jsonl parse). The seed is printed first; the last line is "RESULT
chaos PASS|FAIL {json}" with generations, faults of each kind and wall time.
"""

import argparse
import glob
import gzip
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import traceback
import urllib.request

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fleet as fl  # noqa: E402

SHIM_IMDS = os.path.join(HERE, "..", "report", "rsh_shim_imds.sh")
POOL = ["node%d" % i for i in range(8)]
KINDS = ("notice", "kill", "freeze", "launcher", "volume", "damage", "slowdisk", "leave", "comeback")
PROVIDERS = ("aws", "gcp", "azure")
CKPT_EVERY = 10
MIN_STEP_MS = 20         # paced (tiny.ini trains hundreds of steps a second): faults land mid-run
MIN_NP, MAX_NP = 2, 4
PROGRESS_TIMEOUT, KILL_GRACE, PROBE_TIMEOUT = 4, 2, 10
# bounds on a fault's visible effect (seconds): generous for a loaded 2-core machine, far below a hang
BOUND_REFORM = 60        # notice, kill, damage, leave, comeback: the next world's first step
BOUND_FROZEN = PROGRESS_TIMEOUT + KILL_GRACE + PROBE_TIMEOUT + 60
BOUND_ADOPT = 30         # a restarted launcher: training goes on
BOUND_VOLUME = 90        # space is back: a world trains again


def _read(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def idx_count(path):
    """The number of items an IDX(.gz) file declares."""
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as fh:
        head = fh.read(8)
    return struct.unpack(">I", head[4:8])[0]


class Mocks:
    """One mock metadata service per fake node (127.0.0.1 only)."""

    def __init__(self, binary, fleet):
        self.procs, self.ports = {}, {}
        for n in POOL:
            d = fleet.node_dir(n)
            port_file = os.path.join(d, "imds.port")
            self.procs[n] = subprocess.Popen([binary, "--port", "0", "--port-file", port_file, "--vm-name", n],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for n in POOL:
            d = fleet.node_dir(n)
            port = fl.wait_for(lambda: _read(os.path.join(d, "imds.port")), 10, "the mock of %s" % n, poll=0.02)
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


class Soak:
    """The fleet, the volume, the launcher processes and the record of faults."""

    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.work = os.path.abspath(a.work)
        subprocess.run(["rm", "-rf", self.work], check=True)
        os.makedirs(self.work)
        self.fleet = fl.Fleet(os.path.join(self.work, "sim"))
        flags = fl.Fleet.mpirun_args()
        flags[flags.index("plm_rsh_agent") + 1] = SHIM_IMDS
        self.fleet.mpirun_args = lambda: list(flags)
        self.vol = os.path.join(self.work, "vol")
        os.makedirs(self.vol)
        self.tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", self.vol],
                                    capture_output=True).returncode == 0
        self.run_dir = os.path.join(self.vol, "run")
        self.trace_dir = os.path.join(self.work, "trace")
        os.makedirs(self.trace_dir)
        self.slow_flag = os.path.join(self.work, "slowdisk")
        self.mocks = None
        self.proc = None
        self.launches = 0
        self.launcher_gens = []      # (generation when a launcher started, provider its worlds watch)
        self.faults = {k: 0 for k in KINDS}
        self.skipped = {}
        self.notices = {p: 0 for p in PROVIDERS}
        self.damaged = set()
        self.out = set()             # pool nodes not in the hostfile (they may come back)
        self.to_reclaim = []         # frozen or noticed nodes: killed and dropped once the next world runs
        self.record = []             # (t, kind, detail, seconds to its effect)
        self.starts = {}             # generation -> the step it started from (its start event)
        self.t0 = time.monotonic()
        self.counter = fl.MpirunCounter(self.fleet, interval=0.05)
        self.counter.start()

    # ---- the launcher
    def env(self):
        e = self.fleet.env()
        e["SPOTTRAIN_SAMPLE_TRACE"] = self.trace_dir
        if self.a.shim:
            e["LD_PRELOAD"] = self.a.shim
            e["IOFAULT_PATH"] = "*/checkpoints*|*/final.h5*"
            e["IOFAULT_OPS"] = "write,fsync"
            e["IOFAULT_DELAY_MS"] = "300"
            e["IOFAULT_DELAY_FILE"] = self.slow_flag
            e["ASAN_OPTIONS"] = e.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        return e

    def worker(self, provider):
        a = self.a
        return [a.spottrain, "train", "--config", a.config, "--data-dir", a.data_dir, "--threads", "1",
                "--max-steps", str(a.steps), "--set", "train.epochs=%d" % a.epochs,
                "--set", "checkpoint.every_steps=%d" % CKPT_EVERY, "--set", "checkpoint.keep=100000",
                "--set", "run.log_every=50", "--set", "train.eval_each_epoch=false",
                "--set", "dist.collective_timeout_s=30", "--set", "run.min_step_ms=%d" % a.min_step_ms,
                "--set", "spot.provider=%s" % provider, "--set", "spot.poll_ms=100"]

    def argv(self, provider):
        a = [self.a.spotlaunch, "run", "--hostfile", self.fleet.hostfile, "--min-np", str(MIN_NP),
             "--max-np", str(MAX_NP), "--run-dir", self.run_dir, "--backoff", "0.3", "--backoff-max", "2",
             "--kill-grace", str(KILL_GRACE), "--progress-timeout", str(PROGRESS_TIMEOUT),
             "--start-timeout", "60", "--stop-timeout", "30", "--probe-timeout", str(PROBE_TIMEOUT),
             "--quarantine", "30", "--max-failures", "100000", "--wait-timeout", "120"]
        a += ["--mpirun-arg=" + m for m in self.fleet.mpirun_args()]
        return a + ["--"] + self.worker(provider)

    def start_launcher(self):
        provider = PROVIDERS[self.launches % len(PROVIDERS)]
        self.launches += 1
        gen = self.state_generation()
        self.launcher_gens.append((gen, provider))
        out = open(os.path.join(self.work, "launcher-%d.out" % self.launches), "w")
        err = open(os.path.join(self.work, "launcher-%d.err" % self.launches), "w")
        self.proc = subprocess.Popen(self.argv(provider), stdout=out, stderr=err, env=self.env(), cwd=self.work)

    def stderr(self, n):
        return _read(os.path.join(self.work, "launcher-%d.err" % n)) or ""

    def state_generation(self):
        try:
            with open(os.path.join(self.run_dir, "launcher", "state.json")) as fh:
                return int(json.load(fh).get("generation", 0))
        except (OSError, ValueError):
            return 0

    def provider_of(self, gen):
        p = self.launcher_gens[0][1]
        for g0, prov in self.launcher_gens:
            if g0 < gen:
                p = prov
        return p

    def world_hosts(self, gen):
        hosts = []
        for e in fl.read_jsonl(os.path.join(self.run_dir, "events.jsonl")):
            if e.get("event") == "generation" and e.get("generation") == gen:
                hosts = list(e.get("hosts", []))
        return hosts

    # ---- waiting
    def hb(self):
        return fl.heartbeat(self.run_dir)

    def alive(self):
        """None while the launcher runs; True once it finished the run (exit 0); AssertionError otherwise."""
        rc = self.proc.poll()
        if rc is None:
            return None
        if rc == 0:
            return True
        raise AssertionError("the launcher ended (exit %d) unexpectedly" % rc)

    def wait_training(self, min_steps, timeout):
        """A world trains: min_steps into its generation (the heartbeat's); returns (step, gen)."""
        start = {}

        def ok():
            if self.alive():
                return self.hb()[0], self.hb()[1]
            h = self.hb()
            if not h:
                return None
            step, gen = h[0], h[1]
            if gen not in start:
                start[gen] = self.gen_start_step(gen, step)
            first = start[gen]
            if step >= first + min_steps or step >= self.a.steps:
                return step, gen
            return None
        return fl.wait_for(ok, timeout, "%d steps of training" % min_steps, poll=0.01)

    def gen_start_step(self, gen, seen):
        for e in fl.read_jsonl(os.path.join(self.run_dir, "events.jsonl")):
            if e.get("event") in ("start", "resume") and e.get("generation") == gen:
                return int(e.get("step", seen))
        return seen

    def wait_new_world(self, gen, bound, what):
        """Seconds until a generation after gen trains (a step in the heartbeat) or the run finished;
        AssertionError past bound."""
        t = time.monotonic()

        def ok():
            if self.alive():
                return "finished"
            h = self.hb()
            return h and h[1] > gen and self.first_step_seen(h[1])
        r = fl.wait_for(ok, bound, "the next world after %s (bound %d s)" % (what, bound), poll=0.02)
        return time.monotonic() - t

    def first_step_seen(self, gen):
        h = self.hb()
        if h is None or h[1] != gen:
            return False
        if gen not in self.starts:
            self.starts[gen] = self.gen_start_step(gen, None)
            if self.starts[gen] is None:
                del self.starts[gen]
                return False
        return h[0] > self.starts[gen]

    def step_past(self, step):
        h = self.hb()
        return h is not None and h[0] >= step

    def quarantine_left(self, node):
        try:
            with open(os.path.join(self.run_dir, "launcher", "state.json")) as fh:
                rec = json.load(fh).get("hosts", {}).get(node, {})
            return max(0.0, float(rec.get("quarantined_until", 0)) - time.time())
        except (OSError, ValueError, AttributeError):
            return 0.0

    # ---- faults
    def listed(self):
        return [n for n in self.fleet.nodes]

    def reclaim(self):
        """Nodes marked for reclaiming (frozen, noticed) are killed and dropped once a newer world trains."""
        for n in self.to_reclaim:
            self.fleet.kill(n)
            self.fleet.remove(n)
            self.out.add(n)
        self.to_reclaim = []

    def victim(self, gen):
        hosts = [h for h in self.world_hosts(gen) if h in self.fleet.nodes]
        return self.rng.choice(sorted(hosts)) if hosts else None

    def applicable(self, kind, gen):
        if kind == "damage" and not glob.glob(os.path.join(self.run_dir, "checkpoints", "ckpt-*.h5")):
            return False
        if kind in ("notice", "kill", "freeze", "damage", "leave"):
            return len(self.listed()) > MIN_NP and self.victim(gen) is not None
        if kind == "comeback":
            return bool(self.out)
        if kind == "volume":
            return self.tmpfs
        if kind == "slowdisk":
            return bool(self.a.shim)
        return True

    def inject(self, kind, step, gen):
        f = self.fleet
        t = time.monotonic()
        detail = ""
        took = None
        if kind == "notice":
            node = self.victim(gen)
            prov = self.provider_of(gen)
            self.mocks.control(node, "notice?provider=%s" % prov)
            self.notices[prov] += 1
            detail = "%s on %s" % (prov, node)
            took = self.wait_new_world(gen, BOUND_REFORM, "a %s notice" % prov)
            self.to_reclaim.append(node)
        elif kind in ("kill", "damage"):
            if kind == "damage":
                detail = "damaged %s, " % self.damage_newest()
            node = self.victim(gen)
            f.kill(node)
            f.remove(node)
            self.out.add(node)
            detail += "killed %s" % node
            took = self.wait_new_world(gen, BOUND_REFORM, "kill -9 of %s" % node)
        elif kind == "freeze":
            node = self.victim(gen)
            f.freeze(node)
            detail = node
            took = self.wait_new_world(gen, BOUND_FROZEN, "SIGSTOP of %s" % node)
            self.to_reclaim.append(node)
        elif kind == "launcher":
            self.proc.kill()
            self.proc.wait()
            time.sleep(0.3)
            self.start_launcher()
            fl.wait_for(lambda: self.alive() or self.step_past(step + 5), BOUND_ADOPT,
                        "training after the launcher's restart")
            took = time.monotonic() - t
            detail = "launcher %d, provider %s next" % (self.launches, self.launcher_gens[-1][1])
        elif kind == "volume":
            took, detail = self.full_volume(gen)
        elif kind == "slowdisk":
            open(self.slow_flag, "w").close()
            fl.wait_for(lambda: self.alive() or self.step_past(step + 3 * CKPT_EVERY), BOUND_ADOPT,
                        "training on a slow disk")
            os.unlink(self.slow_flag)
            took = time.monotonic() - t
            detail = "%d steps slow" % (self.hb()[0] - step)
        elif kind == "leave":
            node = self.victim(gen)
            f.remove(node)
            self.to_reclaim.append(node)
            detail = node
            took = self.wait_new_world(gen, BOUND_REFORM, "%s leaving" % node)
        elif kind == "comeback":
            # a node the launcher still holds in quarantine (it froze) comes back after one that it does not
            free = sorted(n for n in self.out if self.quarantine_left(n) <= 0)
            node = self.rng.choice(free or sorted(self.out))
            if not free and len(self.listed()) > MIN_NP:
                self.skipped["comeback"] = self.skipped.get("comeback", 0) + 1
                return
            self.out.discard(node)
            self.mocks.control(node, "reset")
            f.add(node)
            detail = node
            if len(self.world_hosts(gen)) < MAX_NP:
                took = self.wait_new_world(gen, BOUND_REFORM + self.quarantine_left(node), "%s coming back" % node)
            else:
                took = 0.0
        if self.to_reclaim and self.hb()[1] > gen:
            self.reclaim()
        self.faults[kind] += 1
        self.record.append((round(t - self.t0, 1), kind, detail, round(took, 2) if took is not None else None))
        print("chaos: t=%6.1f gen %3d step %5d %-8s %s (%.1f s)" % (t - self.t0, gen, step, kind, detail,
                                                                  took or 0.0), flush=True)

    def damage_newest(self):
        ck = sorted(glob.glob(os.path.join(self.run_dir, "checkpoints", "ckpt-*.h5")))
        path = ck[-1]
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:
            fh.seek(size // 2)
            data = bytearray(fh.read(64))
            fh.seek(size // 2)
            fh.write(bytes(b ^ 0x5A for b in data))
        self.damaged.add(path)
        return os.path.basename(path)

    def full_volume(self, gen):
        """Fill the tmpfs; once a write failed (a world or the launcher exits 74), free it."""
        t = time.monotonic()
        filler = os.path.join(self.vol, "filler")
        subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=64k"], capture_output=True)

        # the events of the failed world may be lost (the volume is full): the launcher's own exit
        # (74, it cannot save its state) is what shows it
        try:
            what = fl.wait_for(lambda: self.proc.poll() is not None and "launcher exit %d" % self.proc.returncode,
                               20, "the launcher to give up on the full volume")
        except AssertionError:
            what = "the launcher went on for 20 s"
        os.unlink(filler)
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            assert rc == 74, "the launcher exited %d on a full volume, expected 74" % rc
            self.start_launcher()
        took = self.wait_new_world(gen, BOUND_VOLUME, "a full volume")
        return time.monotonic() - t, "%s; training again %.1f s after space came back" % (what, took)

    # ---- the schedule
    def soak(self):
        a = self.a
        self.mocks = Mocks(a.mock_imds, self.fleet)
        self.fleet.add(*POOL[:4])
        self.out = set(POOL[4:])
        self.start_launcher()
        order = []
        while True:
            step, gen = self.wait_training(self.rng.randint(5, 40), 120)
            if gen >= a.generations or step >= a.steps - 300 or self.proc.poll() is not None:
                break
            if not order:
                order = list(KINDS)
                self.rng.shuffle(order)
            kind = order.pop(0)
            if len(self.listed()) <= MIN_NP and self.out:
                kind = "comeback"
            if not self.applicable(kind, gen):
                self.skipped[kind] = self.skipped.get(kind, 0) + 1
                continue
            self.inject(kind, step, gen)
        self.reclaim()
        rc = self.proc.wait(timeout=max(120, a.steps / 20))
        assert rc == 0, "launcher exit %d at the end" % rc
        return gen


def describe(pids):
    """pid, state, command line, fake node and parent of each process (for a failure message)."""
    out = []
    for p in pids:
        try:
            with open("/proc/%d/cmdline" % p, "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")[:120]
            env = fl._environ(p) or []
            node = [v.decode(errors="replace") for v in env if v.startswith(b"SIM_NODE=")]
            st = fl._state(p)
            out.append("%d %s ppid %d %s %s" % (p, st[0] if st else "?", fl._ppid(p), node[0] if node else "-", cmd))
        except OSError:
            pass
    return out


def check_samples(run_dir, trace_dir, chain, steps, batch, n_train):
    """Every sample of every epoch exactly once along the chain; returns (complete epochs, samples checked)."""
    want = {}   # generation -> (first, last)
    for g, first, last in chain:
        assert g not in want, "generation %d twice on the chain" % g
        want[g] = (first, last)
    per_step = {}
    for path in glob.glob(os.path.join(trace_dir, "g*-r*-p*.trace")):
        g = int(os.path.basename(path)[1:].split("-")[0])
        if g not in want:
            continue
        lo, hi = want[g]
        with open(path) as fh:
            for line in fh:
                v = line.split()
                if len(v) < 4:
                    continue
                s = int(v[0])
                if lo <= s <= hi:
                    per_step.setdefault(s, []).append((int(v[1]), int(v[2]), [int(x) for x in v[4:]]))
    assert sorted(per_step) == list(range(1, steps + 1)), "steps without a trace: %s" % (
        sorted(set(range(1, steps + 1)) - set(per_step))[:10])
    spe = (n_train + batch - 1) // batch
    seen = {}
    for s in range(1, steps + 1):
        shards = sorted(per_step[s], key=lambda x: x[1])
        epochs = {x[0] for x in shards}
        assert epochs == {(s - 1) // spe}, "step %d read epoch(s) %s" % (s, epochs)
        pos = ((s - 1) % spe) * batch
        for ep, first, samples in shards:
            assert first == pos, "step %d: shards overlap or leave a gap at position %d (next shard at %d)" % (
                s, pos, first)
            pos += len(samples)
            seen.setdefault(ep, []).extend(samples)
        assert pos == min(((s - 1) % spe + 1) * batch, n_train), "step %d read %d positions" % (s, pos)
    complete = 0
    for ep, samples in seen.items():
        assert len(samples) == len(set(samples)), "epoch %d: a sample seen twice" % ep
        if len(samples) == n_train:
            assert set(samples) == set(range(n_train)), "epoch %d: not every sample" % ep
            complete += 1
    return complete, sum(len(v) for v in seen.values())


def check_files(a, run_dir, damaged):
    """Every file under a final name is whole: checkpoints, final.h5, state.json, events.jsonl."""
    bad = []
    files = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.h5"))) + [os.path.join(run_dir, "final.h5")]
    ok_damaged = 0
    for p in files:
        if subprocess.run([a.spottrain, "inspect", p], capture_output=True).returncode != 0:
            if p in damaged:
                ok_damaged += 1
            else:
                bad.append(os.path.basename(p))
    assert not bad, "damaged files under a final name: %s" % bad
    with open(os.path.join(run_dir, "launcher", "state.json")) as fh:
        json.load(fh)
    torn = 0
    with open(os.path.join(run_dir, "events.jsonl")) as fh:
        for line in fh:
            try:
                json.loads(line)
            except ValueError:
                torn += 1
    return len(files), ok_damaged, torn


def reference(a, work, fleet):
    """The same training without interruptions (2 ranks), for the parameters."""
    ref = os.path.join(work, "reference")
    hosts = os.path.join(work, "reference.hosts")
    with open(hosts, "w") as h:
        h.write("ref0 slots=1\nref1 slots=1\n")
    w = [a.spottrain, "train", "--config", a.config, "--data-dir", a.data_dir, "--threads", "1",
         "--max-steps", str(a.steps), "--set", "train.epochs=%d" % a.epochs, "--set", "train.eval_each_epoch=false",
         "--set", "checkpoint.every_steps=100000", "--set", "spot.provider=none", "--run-dir", ref]
    cmd = ["mpirun", "--hostfile", hosts, "-np", "2"] + fl.Fleet.mpirun_args() + w
    subprocess.run(cmd, env=fleet.env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    return os.path.join(ref, "final.h5")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--steps", type=int, default=0, help="training steps (default: enough for the generations)")
    for k in ("--spotlaunch", "--spottrain", "--mock-imds", "--config", "--data-dir", "--work"):
        ap.add_argument(k, required=True)
    ap.add_argument("--shim", default="")
    ap.add_argument("--min-step-ms", type=int, default=MIN_STEP_MS, help="the workers' pace (run.min_step_ms)")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    for k in ("spotlaunch", "spottrain", "mock_imds", "config", "data_dir", "work"):
        setattr(a, k, os.path.abspath(getattr(a, k)))
    if a.shim:
        a.shim = os.path.abspath(a.shim)
    if a.seed is None:
        a.seed = int.from_bytes(os.urandom(4), "little")
    if not a.steps:
        a.steps = max(1100, (200 * MIN_STEP_MS // a.min_step_ms + 30) * a.generations + 600)
    train = os.path.join(a.data_dir, "train-images-idx3-ubyte.gz")
    n_train = idx_count(train)
    batch = 64
    a.epochs = (a.steps * batch + n_train - 1) // n_train + 1
    print("chaos: seed %d (reproduce with --seed %d), %d generations, %d steps" % (a.seed, a.seed, a.generations,
                                                                                a.steps), flush=True)
    s = Soak(a)
    ok = False
    result = {"seed": a.seed}
    t = time.monotonic()
    try:
        if not s.tmpfs:
            print("chaos: cannot mount a tmpfs here: no full-volume faults", flush=True)
        gens = s.soak()
        st = json.loads(subprocess.run([a.spotlaunch, "status", s.run_dir, "--json"], capture_output=True,
                                       text=True, check=True).stdout)
        assert st["finished"] and st["final_step"] == a.steps, "status: %s" % {k: st[k] for k in (
            "finished", "final_step")}
        chain = fl.exactly_once_chain(s.run_dir, a.steps)
        epochs, samples = check_samples(s.run_dir, s.trace_dir, chain, a.steps, batch, n_train)
        for x in st["incidents"]:
            if "frozen" in (x.get("reason") or ""):
                assert x["detect_s"] <= PROGRESS_TIMEOUT + 1.0, "frozen world found after %.1f s" % x["detect_s"]
        assert s.counter.max_seen <= 1, "%d training mpiruns at once" % s.counter.max_seen
        s.counter.stop()
        try:
            fl.wait_for(lambda: not s.fleet.pids(), 30, "every process of the fleet to end")
        except AssertionError:
            raise AssertionError("processes left behind: %s" % describe(s.fleet.pids()))
        n_files, damaged_left, torn = check_files(a, s.run_dir, s.damaged)
        ref = reference(a, s.work, s.fleet)
        got, want = fl.final_params(os.path.join(s.run_dir, "final.h5")), fl.final_params(ref)
        assert sorted(got) == sorted(want)
        diff = [k for k in got if got[k].tobytes() != want[k].tobytes()]
        assert not diff, "final parameters differ from the uninterrupted run in %s" % diff
        assert st["generations"] >= a.generations, "only %d generations (raise --steps); every other check held" % (
            st["generations"])
        events = fl.read_jsonl(os.path.join(s.run_dir, "events.jsonl"))
        seen_notices = {}
        for e in events:
            if e.get("event") == "notice" and e.get("source") != "fleet-sim":
                seen_notices[e.get("provider")] = seen_notices.get(e.get("provider"), 0) + 1
        result.update({"generations": st["generations"], "steps": a.steps, "faults": s.faults,
                       "skipped": s.skipped, "notices_injected": s.notices, "notice_events": seen_notices,
                       "launcher_starts": s.launches, "failures": st["failures"],
                       "interruptions": st["interruptions"], "steps_lost": st["steps_lost"],
                       "chain_worlds": len(chain), "complete_epochs": epochs, "samples_checked": samples,
                       "files_checked": n_files, "damaged_on_purpose_left": damaged_left,
                       "torn_event_lines": torn, "goodput": round(st["goodput"], 3),
                       "max_effect_s": {k: max([r[3] or 0 for r in s.record if r[1] == k] or [0]) for k in KINDS},
                       "params": "bit-identical"})
        ok = True
    except Exception as e:  # report, then fail
        traceback.print_exc()
        for n in range(1, s.launches + 1):
            sys.stderr.write("---- launcher-%d.err (tail)\n%s\n" % (n, s.stderr(n)[-3000:]))
        result["error"] = str(e)
        result["faults"] = s.faults
        result["record_tail"] = s.record[-5:]
    finally:
        s.counter.stop()
        if s.proc and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        if s.mocks:
            s.mocks.close()
        s.fleet.cleanup()
        if s.tmpfs:
            if ok and not a.keep:
                subprocess.run(["umount", s.vol])
            elif not ok:
                subprocess.run(["cp", "-a", s.run_dir, os.path.join(s.work, "run-copy")], capture_output=True)
                subprocess.run(["umount", s.vol])
    result["wall_s"] = round(time.monotonic() - t, 1)
    print("RESULT chaos %s %s" % ("PASS" if ok else "FAIL", json.dumps(result)), flush=True)
    if ok and not a.keep:
        subprocess.run(["rm", "-rf", s.work])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
