"""fleet.py - a fleet of fake nodes on one machine, for spotlaunch tests.

TESTING.md: Open MPI starts its daemons for node0..nodeN through an rsh agent
shim (rsh_shim.sh) that runs them locally with SIM_NODE, TMPDIR and a vader
backing directory of their own. This module plays the autoscaler (it keeps a
hostfile current) and the cloud (faults on node k), and reads a run directory
the way a test needs to: heartbeat, events, the exactly-once chain of steps,
and the final parameters. Only 127.0.0.1 is used.

Everything a fleet starts carries SIM_ROOT=<its root> in its environment; that
is how its processes are found (and only its: other fleets may run beside it).
"""

import json
import os
import shutil
import signal
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(HERE, "rsh_shim.sh")


def read_jsonl(path):
    """The JSON objects of a JSON-lines file (a torn last line is skipped)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    out.append(obj)
    except FileNotFoundError:
        pass
    return out


def heartbeat(run_dir):
    """(step, generation, wall time) from RUN/heartbeat, or None."""
    try:
        with open(os.path.join(run_dir, "heartbeat")) as f:
            parts = f.read().split()
        return int(parts[0]), int(parts[1]), float(parts[2])
    except (OSError, ValueError, IndexError):
        return None


def wait_for(pred, timeout, what, poll=0.01):
    """Poll pred() until it returns a true value (returned); AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(poll)


def _environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def _state(pid):
    """(state letter, comm) from /proc/PID/stat, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    return s[s.rindex(")") + 2], comm


def _ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
        return int(s[s.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class Fleet:
    """Fake nodes, a hostfile kept like an autoscaler would, and faults."""

    def __init__(self, root):
        self.root = os.path.abspath(root)
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(os.path.join(self.root, "nodes"))
        os.makedirs(os.path.join(self.root, "tmp"))
        self.hostfile = os.path.join(self.root, "hostfile")
        self.discover_file = os.path.join(self.root, "discover.txt")
        self.nodes = []          # names in the hostfile, in order
        self.log = []            # (monotonic time, action) for the test's record
        self._write_hostfile()

    # ---- environment and mpirun flags
    def env(self):
        e = dict(os.environ)
        e["SIM_ROOT"] = self.root
        # mpirun's own session directory goes under SIM_ROOT too, not /tmp/ompi.*,
        # so cleaning up never touches another test's Open MPI
        e["TMPDIR"] = os.path.join(self.root, "tmp")
        e["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        e["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        e["OMP_NUM_THREADS"] = "1"
        e.pop("SIM_NODE", None)
        e.pop("SPOTLAUNCH_GENERATION", None)
        return e

    @staticmethod
    def mpirun_args():
        """The flags TESTING.md gives for the fake fleet (loopback only, no DNS)."""
        return ["--mca", "plm_rsh_agent", SHIM, "--mca", "if_base_do_not_resolve", "1",
                "--mca", "btl", "self,vader,tcp", "--mca", "btl_tcp_if_include", "lo",
                "--mca", "oob_tcp_if_include", "lo", "--oversubscribe", "--bind-to", "none"]

    # ---- the autoscaler
    def _write_hostfile(self):
        """The Open MPI hostfile, and the same list as "host:slots" lines for a discovery command."""
        for path, fmt in ((self.hostfile, "%s slots=1\n"), (self.discover_file, "%s:1\n")):
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write("# kept by the fake autoscaler\n")
                for n in self.nodes:
                    f.write(fmt % n)
            os.rename(tmp, path)

    def discover_cmd(self):
        """A discovery command (split at blanks by spotlaunch, no shell) printing host:slots lines."""
        return "cat " + self.discover_file

    def _note(self, what):
        self.log.append((time.monotonic(), what))

    def node_dir(self, name):
        d = os.path.join(self.root, "nodes", name)
        os.makedirs(d, exist_ok=True)
        return d

    def add(self, *names):
        """New nodes join (one hostfile write for all of them)."""
        for n in names:
            for flag in ("down", "frozen"):
                try:
                    os.unlink(os.path.join(self.node_dir(n), flag))
                except FileNotFoundError:
                    pass
            if n not in self.nodes:
                self.nodes.append(n)
        self._write_hostfile()
        self._note("add %s" % ",".join(names))

    def remove(self, *names):
        """The autoscaler drops nodes from the hostfile (they are gone)."""
        self.nodes = [n for n in self.nodes if n not in names]
        self._write_hostfile()
        self._note("remove %s" % ",".join(names))

    # ---- processes
    def pids(self, node=None, ranks_only=False):
        """Live processes of this fleet (of one fake node when node is given)."""
        want_root = ("SIM_ROOT=" + self.root).encode()
        want_node = ("SIM_NODE=" + node).encode() if node else None
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            pid = int(d)
            if pid == os.getpid():
                continue
            env = _environ(pid)
            if not env or want_root not in env:
                continue
            if want_node and want_node not in env:
                continue
            if ranks_only and not any(v.startswith(b"OMPI_COMM_WORLD_RANK=") for v in env):
                continue
            st = _state(pid)
            if st and st[0] not in "ZX":
                out.append(pid)
        return out

    def mpiruns(self, training_only=True):
        """Live mpirun processes of this fleet (training worlds: started by spotlaunch with a token).

        A process mpirun forks to start a remote daemon is still called mpirun
        until it executes the rsh agent; those are children of an mpirun and
        are not counted.
        """
        found = []
        for p in self.pids():
            st = _state(p)
            if not st or st[1] != "mpirun":
                continue
            if training_only and not any(v.startswith(b"SPOTLAUNCH_TOKEN=") for v in (_environ(p) or [])):
                continue
            found.append(p)
        return [p for p in found if _ppid(p) not in found]

    def _signal(self, pids, sig):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    # ---- faults
    def notice(self, node, run_dir):
        """An interruption notice on node: the agreed stop, as its spot watcher would start it.

        Until the mock metadata service exists (tests/mock_imds), this writes the
        "notice" event the node's watcher would write and sends SIGTERM to the
        node's ranks, which makes the world stop at an agreed step with a
        checkpoint exactly as a notice does (only the recorded reason differs).
        """
        hb = heartbeat(run_dir)
        gen = hb[1] if hb else 0
        now = time.time()
        ev = {"event": "notice", "time": now, "node": node, "provider": "sim", "action": "terminate",
              "notice_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 120)),
              "received": now, "step": hb[0] if hb else -1, "generation": gen, "rank": -1,
              "source": "fleet-sim"}
        with open(os.path.join(run_dir, "events.jsonl"), "a") as f:
            f.write(json.dumps(ev) + "\n")
        ranks = self.pids(node, ranks_only=True)
        self._signal(ranks, signal.SIGTERM)
        self._note("notice %s (SIGTERM to %d rank(s))" % (node, len(ranks)))
        return ranks

    def kill(self, node):
        """The node dies without notice: unreachable from now on, its daemon and ranks killed."""
        open(os.path.join(self.node_dir(node), "down"), "w").close()
        pids = self.pids(node)
        self._signal(pids, signal.SIGKILL)
        self._note("kill %s (%d process(es))" % (node, len(pids)))
        return pids

    def freeze(self, node):
        """The node hangs (or is partitioned): its processes stop, new launches on it hang."""
        open(os.path.join(self.node_dir(node), "frozen"), "w").close()
        pids = self.pids(node)
        self._signal(pids, signal.SIGSTOP)
        self._note("freeze %s (%d process(es))" % (node, len(pids)))
        return pids

    def cleanup(self):
        """Kill everything this fleet started (stopped ones too) and remove SIM_ROOT."""
        for _ in range(3):
            pids = self.pids()
            if not pids:
                break
            self._signal(pids, signal.SIGKILL)
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)


class MpirunCounter(threading.Thread):
    """Samples the number of live mpirun processes of a fleet; max_seen is the most at once."""

    def __init__(self, fleet, interval=0.1):
        super().__init__(daemon=True)
        self.fleet = fleet
        self.interval = interval
        self.max_seen = 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            n = len(self.fleet.mpiruns())
            self.max_seen = max(self.max_seen, n)
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()


# ---------------------------------------------------------------- run directory checks

def worker_sessions(events):
    """Worker worlds in order: start/resume/checkpoint/stop/exit records grouped per generation start."""
    sessions = []
    by_gen = {}
    for ev in events:
        name = ev.get("event")
        gen = ev.get("generation", 0)
        if ev.get("source") in ("launcher", "fleet-sim"):
            continue
        if name in ("resume", "start"):
            s = by_gen.get(gen)
            if s is None or s.get("started") or s.get("ended"):
                s = {"generation": gen, "checkpoints": {}, "started": False, "ended": False}
                sessions.append(s)
                by_gen[gen] = s
            if name == "resume":
                s["resume_step"] = ev["step"]
                s["resume_path"] = ev.get("path", "")
                s["resume_from_world"] = ev.get("from_world_size")
            else:
                s["started"] = True
                s["start_step"] = ev["step"]
                s["world_size"] = ev.get("world_size")
            continue
        s = by_gen.get(gen)
        if s is None:
            continue
        if name == "checkpoint":
            s["checkpoints"][ev["step"]] = ev.get("path", "")
        elif name == "stop":
            s["stop_step"] = ev["step"]
            s["stop_reason"] = ev.get("reason")
        elif name == "exit":
            s["exit_code"] = ev.get("code")
            s["exit_step"] = ev.get("step")
            s["ended"] = True
    return sessions


def exactly_once_chain(run_dir, final_step):
    """Check that the worlds whose work reached final.h5 covered steps 1..final_step once each.

    Walks back from the world that finished: it began at its resume step r; the
    world it resumed from must have recorded a durable checkpoint of step r (the
    same file) after beginning below r; and so on down to a fresh start at 0.
    Work that was rolled back (steps after the checkpoint a later world resumed
    from) is not on the chain. Returns the chain as [(generation, first, last)]
    from the start; raises AssertionError with the reason otherwise.
    """
    events = read_jsonl(os.path.join(run_dir, "events.jsonl"))
    sessions = [s for s in worker_sessions(events) if s["started"]]
    finals = [s for s in sessions if s.get("exit_code") == 0]
    assert finals, "no world finished (no exit event with code 0)"
    cur = finals[-1]
    assert cur.get("exit_step") == final_step, \
        "the finished world ended at step %s, not %d" % (cur.get("exit_step"), final_step)
    assert os.path.exists(os.path.join(run_dir, "final.h5")), "no final.h5"
    chain = []
    end = final_step
    idx = sessions.index(cur)
    while True:
        begin = cur.get("resume_step", cur["start_step"])
        assert cur["start_step"] == begin, "generation %d: start step %d differs from its resume step %d" % (
            cur["generation"], cur["start_step"], begin)
        assert begin <= end, "generation %d began at %d after its end %d" % (cur["generation"], begin, end)
        chain.append((cur["generation"], begin + 1, end))
        if begin == 0:
            assert "resume_step" not in cur, "a fresh start that claims to resume"
            break
        path = cur.get("resume_path", "")
        assert os.path.basename(path) == "ckpt-%08d.h5" % begin, \
            "generation %d resumed step %d from %s" % (cur["generation"], begin, path)
        # the world that wrote it: its checkpoint event, or (an asynchronous write is
        # reported only at the next checkpoint, so a world that died may not have
        # reported it) the generation recorded in the file itself
        attrs = ckpt_attrs(os.path.join(run_dir, "checkpoints", os.path.basename(path)))
        if attrs is not None:
            assert attrs["step"] == begin, "%s holds step %s" % (path, attrs["step"])
        prev = None
        for j in range(idx - 1, -1, -1):
            p = sessions[j]
            if p.get("resume_step", p["start_step"]) >= begin:
                continue
            if begin in p["checkpoints"] or (attrs is not None and attrs["generation"] == p["generation"]):
                prev, idx = p, j
                break
        assert prev is not None, "no earlier world wrote the checkpoint of step %d that generation %d resumed from" % (
            begin, cur["generation"])
        cur, end = prev, begin
    chain.reverse()
    # contiguous, no overlap, 1..final_step
    expect = 1
    for gen, first, last in chain:
        assert first == expect, "gap or overlap before step %d (generation %d starts at %d)" % (expect, gen, first)
        expect = last + 1
    assert expect == final_step + 1
    return chain


def ckpt_attrs(path):
    """{step, generation, world_size} of a checkpoint file, or None if it is gone (or h5py is missing)."""
    try:
        import h5py
        with h5py.File(path, "r") as f:
            return {k: int(f.attrs[k]) for k in ("step", "generation", "world_size")}
    except (ImportError, OSError, KeyError):
        return None


def final_params(path):
    """{tensor name: numpy array} of /params in a checkpoint or final.h5 (needs h5py)."""
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        f["params"].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if hasattr(obj, "shape") else None)
    return out


def params_rel_diff(a_path, b_path):
    """The largest per-tensor relative difference ||a-b|| / ||b|| between two models' parameters."""
    import numpy as np
    a, b = final_params(a_path), final_params(b_path)
    assert sorted(a) == sorted(b), "different tensors: %s vs %s" % (sorted(a), sorted(b))
    worst = 0.0
    for k in a:
        d = float(np.linalg.norm(a[k].astype(np.float64) - b[k].astype(np.float64)))
        n = float(np.linalg.norm(b[k].astype(np.float64)))
        worst = max(worst, d / n if n > 0 else d)
    return worst
