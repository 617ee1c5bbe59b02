#!/usr/bin/env python3
"""netns.py - real network faults: spotlaunch on a fleet of Linux network namespaces.

    netns.py SCENARIO... --spotlaunch BIN --spottrain BIN --config tiny.ini --data-dir DIR --work DIR

Each node is a network namespace with one veth link to a bridge in a hub
namespace; the head (spotlaunch and mpirun) is one more. Addresses come from
198.18.0.0/15 only (198.18.0.0/24), there is no default route, nothing is
connected to this machine's own network namespace: no packet can leave.
Open MPI's rsh agent (netns_shim.sh) enters a node's namespace with
`ip netns exec` and gives it its own host name (unshare --uts). MPI runs over
real TCP between the namespaces (btl self,tcp; no shared memory).

Scenarios (a fault on node n2 of four once rank 0 reached step 150):
  link_down  n2's link goes down (the hub side of its veth): no reset, no FIN
  partition  n2's link leaves the bridge: carrier up everywhere, packets lost
  crash      n2's link down, then every process in its namespace killed (-9)
  lossy      n2 drops 5% of its packets at random each way (nftables `numgen
             random`) until the end: TCP retransmits, the world trains on
  heavy_loss n2 drops 90% each way until the end: the node is effectively
             lost, the world is re-formed without it
  slow_link  n2's link shaped by tc tbf both ways (8 Mbit/s, up to 100 ms of
             queue) for 200 steps: slower, the world trains on
  netem      loss and delay (tc netem) on n2's link for 200 steps: the world
             trains on (skipped where the kernel lacks sch_netem)
For each fault that loses the node: the launcher's detection within its bound
(--progress-timeout and dist.collective_timeout_s, the later, plus 1 s), a
re-formed world without n2 that finishes; measured: detection, node loss ->
first step of the new world, steps lost. For each the world survives (both
timeouts 30 s there, above TCP's retransmission backoff): one generation, no
re-forming; measured: steps per second before and under the fault. For all:
evidence that the fault was in place, the exactly-once chain of steps, final
parameters bit-identical to an uninterrupted run, no process left in any
namespace. Needs root and the
kernel's netns, veth and bridge: otherwise exit 77 with the reason; a scenario
whose tool or kernel module is missing (nft, nf_tables' numgen, sch_tbf,
sch_netem) is skipped with the reason. The last line is
"RESULT netns PASS|FAIL {json}".
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fleet"))
import fleet as fl  # noqa: E402

SHIM = os.path.join(HERE, "netns_shim.sh")
NODES = ("n0", "n1", "n2", "n3")
VICTIM = "n2"
SUBNET = "198.18.0.0/24"
PROGRESS_TIMEOUT, COLLECTIVE_TIMEOUT, KILL_GRACE, PROBE_TIMEOUT = 6, 5, 2, 5
# Where the world must survive a degraded link, both timeouts allow for TCP's retransmission
# backoff (RTO 200 ms at least, doubling): at 5 % loss a 5 s collective timeout re-formed the
# world in 1 of 20 runs (a collective waited longer on retransmissions; exit 70).
SURVIVE_TIMEOUT = 30
STEPS, FAULT_STEP, CKPT_EVERY = 700, 150, 50


def ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), check=check, capture_output=True, text=True)


def skip_reason():
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    probe = "stprobe-%d" % os.getpid()
    r = ip("netns", "add", probe, check=False)
    if r.returncode:
        return "no network namespaces here: %s" % r.stderr.strip()
    try:
        for what in (["link", "add", "stpa", "type", "veth", "peer", "name", "stpb"],
                     ["link", "add", "stbr", "type", "bridge"]):
            r = ip("-n", probe, *what, check=False)
            if r.returncode:
                return "the kernel lacks %s: %s" % (what[4], r.stderr.strip())
    finally:
        ip("netns", "del", probe, check=False)
    return None


LOSS_TABLE = "spottrain_loss"
LOSS_PERCENT = {"lossy": 5, "heavy_loss": 90}
TBF = ["tbf", "rate", "8mbit", "burst", "16kb", "latency", "100ms"]
NETEM = ["netem", "delay", "20ms", "5ms", "loss", "2%"]
SURVIVED = ("lossy", "slow_link", "netem")  # the world trains on: no re-forming
FAULT_STEPS = 200                            # how long a fault the world survives lasts (lossy: to the end)


def loss_ruleset(percent):
    """nftables rules dropping percent % of eth0's packets each way, drawn at random per packet."""
    return ("table inet %s {\n"
            " chain input { type filter hook input priority 0; policy accept;"
            " iifname \"eth0\" numgen random mod 100 < %d counter drop; }\n"
            " chain output { type filter hook output priority 0; policy accept;"
            " oifname \"eth0\" numgen random mod 100 < %d counter drop; }\n"
            "}\n" % (LOSS_TABLE, percent, percent))


def tool_available(kind):
    """(True, "") when this machine can inject kind's fault, else (False, why): tried in a scratch namespace."""
    if kind not in ("lossy", "heavy_loss", "slow_link", "netem"):
        return True, ""
    probe = "stprobe-%d" % os.getpid()
    ip("netns", "add", probe)
    try:
        ip("-n", probe, "link", "add", "stpa", "type", "veth", "peer", "name", "stpb")
        if kind in ("lossy", "heavy_loss"):
            cmd = ["ip", "netns", "exec", probe, "nft", "-f", "-"]
            r = subprocess.run(cmd, input=loss_ruleset(1), capture_output=True, text=True)
            what = "nftables (Debian package nftables; kernel nf_tables with numgen)"
        else:
            qdisc = TBF if kind == "slow_link" else NETEM
            r = subprocess.run(["tc", "-n", probe, "qdisc", "add", "dev", "stpa", "root"] + qdisc,
                               capture_output=True, text=True)
            what = "sch_%s" % qdisc[0]
        return r.returncode == 0, "" if r.returncode == 0 else "%s: %s" % (what, r.stderr.strip())
    except FileNotFoundError as e:
        return False, "no %s" % e.filename
    finally:
        ip("netns", "del", probe, check=False)


class Net:
    """The namespaces: hub (bridge), head (launcher), one per node; veth links; no route out."""

    def __init__(self, root):
        self.root = root
        self.prefix = "st" + uuid.uuid4().hex[:6]
        self.hub = self.prefix + "-hub"
        self.made = []
        ip("netns", "add", self.hub)
        self.made.append(self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        self.addr = {}
        for i, name in enumerate(("head",) + NODES):
            self.node(name, "198.18.0.%d" % (10 + i))

    def ns(self, name):
        return "%s-%s" % (self.prefix, name)

    def port(self, name):
        return "p-" + name  # the hub side of name's link

    def node(self, name, addr):
        ns = self.ns(name)
        ip("netns", "add", ns)
        self.made.append(ns)
        tmp_a, tmp_b = self.prefix + "a", self.prefix + "b"
        ip("link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        ip("link", "set", tmp_a, "netns", self.hub)
        ip("-n", self.hub, "link", "set", tmp_a, "name", self.port(name))
        ip("-n", self.hub, "link", "set", self.port(name), "master", "br0", "up")
        ip("link", "set", tmp_b, "netns", ns)
        ip("-n", ns, "link", "set", tmp_b, "name", "eth0")
        ip("-n", ns, "addr", "add", addr + "/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        self.addr[name] = addr

    def pids(self, name=None):
        out = []
        for n in ([name] if name else [x for x in self.made if x != self.hub]):
            ns = n if n.startswith(self.prefix) else self.ns(n)
            r = ip("netns", "pids", ns, check=False)
            out += [int(p) for p in r.stdout.split()]
        return out

    def kill_all(self, name=None):
        for _ in range(5):
            pids = self.pids(name)
            if not pids:
                return
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    def close(self):
        self.kill_all()
        for ns in reversed(self.made):
            ip("netns", "del", ns, check=False)

    def exec_argv(self, name):
        return ["ip", "netns", "exec", self.ns(name)]


def mpirun_args():
    return ["--mca", "plm_rsh_agent", SHIM, "--mca", "plm_rsh_no_tree_spawn", "1",
            "--mca", "if_base_do_not_resolve", "1", "--mca", "btl", "self,tcp",
            "--mca", "btl_tcp_if_include", SUBNET, "--mca", "oob_tcp_if_include", SUBNET,
            "--bind-to", "none"]


def worker(a, run_dir=None, collective_timeout=COLLECTIVE_TIMEOUT):
    w = [a.spottrain, "train", "--config", a.config, "--data-dir", a.data_dir, "--threads", "1",
         "--max-steps", str(STEPS), "--set", "train.epochs=1", "--set", "train.eval_each_epoch=false",
         "--set", "checkpoint.every_steps=%d" % CKPT_EVERY, "--set", "checkpoint.keep=100000",
         "--set", "spot.provider=none", "--set", "dist.collective_timeout_s=%d" % collective_timeout,
         "--set", "run.min_step_ms=10"]
    return w + (["--run-dir", run_dir] if run_dir else [])


def env(net, root):
    e = dict(os.environ, NETNS_PREFIX=net.prefix, NETNS_ROOT=root, OMPI_ALLOW_RUN_AS_ROOT="1",
             OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1", TMPDIR=os.path.join(root, "tmp"))
    os.makedirs(e["TMPDIR"], exist_ok=True)
    return e


def inject(net, kind):
    """The fault on VICTIM; returns what undoes it (None: nothing to undo)."""
    port = net.port(VICTIM)
    if kind == "link_down":
        ip("-n", net.hub, "link", "set", port, "down")
    elif kind == "partition":
        ip("-n", net.hub, "link", "set", port, "nomaster")
    elif kind == "crash":
        ip("-n", net.hub, "link", "set", port, "down")
        net.kill_all(VICTIM)
    elif kind in LOSS_PERCENT:
        # in n2's own namespace, on its link only (its loopback keeps working)
        subprocess.run(net.exec_argv(VICTIM) + ["nft", "-f", "-"], input=loss_ruleset(LOSS_PERCENT[kind]),
                       check=True, capture_output=True, text=True)
        return lambda: subprocess.run(net.exec_argv(VICTIM) + ["nft", "delete", "table", "inet", LOSS_TABLE],
                                      check=True, capture_output=True)
    elif kind in ("netem", "slow_link"):
        # both ways: n2's egress, and the hub's egress towards n2
        sides = ((net.ns(VICTIM), "eth0"), (net.hub, port))
        for ns, dev in sides:
            subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root"] + (NETEM if kind == "netem" else TBF),
                           check=True, capture_output=True)
        return lambda: [subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=True,
                                       capture_output=True) for ns, dev in sides]
    return None


def fault_evidence(net, kind):
    """What n2's link shows of the fault (packets dropped by the loss rules, packets tbf held back): the
    fault was really there. None for the other kinds."""
    if kind in LOSS_PERCENT:
        r = subprocess.run(net.exec_argv(VICTIM) + ["nft", "list", "table", "inet", LOSS_TABLE], check=True,
                           capture_output=True, text=True)
        words = r.stdout.split()
        dropped = [int(words[i + 2]) for i, w in enumerate(words[:-2]) if w == "counter" and words[i + 1] == "packets"]
        assert len(dropped) == 2 and all(dropped), "the loss rules dropped %s packets (in, out)" % dropped
        return {"packets_dropped_in_out": dropped}
    if kind == "slow_link":
        r = subprocess.run(["tc", "-s", "-n", net.ns(VICTIM), "qdisc", "show", "dev", "eth0"], check=True,
                           capture_output=True, text=True)
        words = r.stdout.replace(",", " ").replace(")", " ").split()
        held = int(words[words.index("overlimits") + 1])
        assert held > 0, "tbf held back no packet: %s" % r.stdout
        return {"tbf_overlimits": held}
    return None


def scenario(a, kind, ref_final):
    root = os.path.join(a.work, kind)
    subprocess.run(["rm", "-rf", root], check=True)
    os.makedirs(os.path.join(root, "nodes"))
    run_dir = os.path.join(root, "run")
    hostfile = os.path.join(root, "hostfile")
    with open(hostfile, "w") as fh:
        fh.write("".join("%s slots=1\n" % n for n in NODES))
    net = Net(root)
    proc = None
    progress, collective = ((SURVIVE_TIMEOUT, SURVIVE_TIMEOUT) if kind in SURVIVED
                            else (PROGRESS_TIMEOUT, COLLECTIVE_TIMEOUT))
    try:
        argv = net.exec_argv("head") + [a.spotlaunch, "run", "--hostfile", hostfile, "--min-np", "2",
                                        "--max-np", "4", "--run-dir", run_dir, "--backoff", "0.5",
                                        "--kill-grace", str(KILL_GRACE), "--progress-timeout",
                                        str(progress), "--start-timeout", "60", "--stop-timeout", "30",
                                        "--probe-timeout", str(PROBE_TIMEOUT), "--quarantine", "600"]
        argv += ["--mpirun-arg=" + m for m in mpirun_args()] + ["--"] + worker(a, collective_timeout=collective)
        err = open(os.path.join(root, "launcher.err"), "w")
        proc = subprocess.Popen(argv, stdout=err, stderr=err, env=env(net, root), cwd=root)

        def at(step, gen):
            if proc.poll() is not None:
                raise AssertionError("the launcher ended (exit %d) early" % proc.returncode)
            h = fl.heartbeat(run_dir)
            return h if h and h[0] >= step and h[1] >= gen else None
        before = fl.wait_for(lambda: at(FAULT_STEP - 100, 1), 120, "step %d" % (FAULT_STEP - 100))
        t_before = time.monotonic()
        hb = fl.wait_for(lambda: at(FAULT_STEP, 1), 120, "step %d" % FAULT_STEP)
        t0 = time.monotonic()
        undo = inject(net, kind)
        figures = {"fault_at_step": hb[0],
                   "steps_per_s_before": round((hb[0] - before[0]) / max(t0 - t_before, 1e-3), 1)}
        if kind in SURVIVED:
            # a fault the world survives: steps go on in generation 1 (a slower pace is fine)
            under = fl.wait_for(lambda: at(hb[0] + FAULT_STEPS, 1), 180, "%d steps under %s" % (FAULT_STEPS, kind))
            figures["steps_per_s_under_fault"] = round((under[0] - hb[0]) / (time.monotonic() - t0), 1)
            figures["evidence"] = fault_evidence(net, kind)
            if kind != "lossy":
                undo()
        else:
            fl.wait_for(lambda: at(0, 2) and _first_step(run_dir, 2), 120, "the first step of the next world")
            figures["loss_to_first_step_s"] = round(time.monotonic() - t0, 2)
            figures["evidence"] = fault_evidence(net, kind)
        rc = proc.wait(timeout=180)
        assert rc == 0, "launcher exit %d" % rc
        st = json.loads(subprocess.run([a.spotlaunch, "status", run_dir, "--json"], capture_output=True,
                                       text=True, check=True).stdout)
        assert st["finished"] and st["final_step"] == STEPS, st
        chain = fl.exactly_once_chain(run_dir, STEPS)
        got, want = fl.final_params(os.path.join(run_dir, "final.h5")), fl.final_params(ref_final)
        diff = [k for k in want if got[k].tobytes() != want[k].tobytes()]
        assert not diff, "final parameters differ from the uninterrupted run in %s" % diff
        if kind in SURVIVED:
            assert st["generations"] == 1 and st["failures"] == 0, \
                "the world was re-formed under %s: %s" % (kind, st["world"])
            figures["generations"] = st["generations"]
        else:
            inc = st["incidents"][0]
            bound = max(PROGRESS_TIMEOUT, COLLECTIVE_TIMEOUT) + 1.0
            assert inc["kind"] == "failure", inc
            assert inc["detect_s"] <= bound, "detected after %.2f s (bound %.1f)" % (inc["detect_s"], bound)
            last = st["world"][-1]
            assert VICTIM not in last["hosts"].split(","), "the lost node is in the last world: %s" % last
            figures.update({k: round(inc[k], 3) if isinstance(inc.get(k), float) else inc.get(k)
                            for k in ("reason", "detect_s", "kill_s", "relaunch_s", "first_step_s", "total_s",
                                      "last_step", "resumed_step", "steps_lost")})
            figures["worlds"] = [(w["generation"], w["np"], w["hosts"]) for w in st["world"]]
        proc = None
        net.kill_all()
        left = net.pids()
        assert not left, "%d process(es) left in the namespaces" % len(left)
        figures["chain"] = chain
        figures["params"] = "bit-identical"
        return figures
    except Exception:
        with open(os.path.join(root, "launcher.err")) as fh:  # without the workers' progress lines
            lines = [x for x in fh if not x.startswith(("step ", "  ", "spottrain[")) or "error" in x.lower()]
        sys.stderr.write("---- launcher.err (tail, without progress lines)\n%s\n" % "".join(lines)[-8000:])
        raise
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        net.close()


def _first_step(run_dir, gen):
    """The heartbeat shows a step of generation gen after its start (its start event)."""
    h = fl.heartbeat(run_dir)
    if not h or h[1] < gen:
        return False
    for e in fl.read_jsonl(os.path.join(run_dir, "events.jsonl")):
        if e.get("event") in ("start", "resume") and e.get("generation") == h[1]:
            return h[0] > int(e.get("step", 0))
    return False


def reference(a):
    """The uninterrupted run (2 ranks on this machine's loopback), for the parameters."""
    ref = os.path.join(a.work, "reference")
    subprocess.run(["rm", "-rf", ref], check=True)
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
    cmd = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader,tcp",
           "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo"] + worker(a, ref)
    subprocess.run(cmd, env=e, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(ref, "final.h5")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="+", choices=("link_down", "partition", "crash", "lossy", "heavy_loss",
                                                      "slow_link", "netem"))
    for k in ("--spotlaunch", "--spottrain", "--config", "--data-dir", "--work"):
        ap.add_argument(k, required=True)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, run directories)")
    a = ap.parse_args()
    for k in ("spotlaunch", "spottrain", "config", "data_dir", "work"):
        setattr(a, k, os.path.abspath(getattr(a, k)))
    why = skip_reason()
    if why:
        print("netns: skipped: %s" % why)
        return 77
    os.makedirs(a.work, exist_ok=True)
    results, ok = {}, True
    t = time.monotonic()
    ref = None
    for kind in a.scenarios:
        have, why = tool_available(kind)
        if not have:
            print("netns: %s skipped: this machine lacks %s" % (kind, why), flush=True)
            results[kind] = {"skipped": why}
            continue
        try:
            ref = ref or reference(a)
            results[kind] = scenario(a, kind, ref)
            print("netns: %s passed: %s" % (kind, json.dumps(results[kind])), flush=True)
        except Exception as e:  # report, go on with the next one
            traceback.print_exc()
            results[kind] = {"error": str(e)}
            ok = False
    results["seconds"] = round(time.monotonic() - t, 1)
    print("RESULT netns %s %s" % ("PASS" if ok else "FAIL", json.dumps(results)), flush=True)
    if ok and all("skipped" in results[k] for k in a.scenarios):
        return 77  # nothing was tested: a skip, not a pass
    if ok and not a.keep:
        subprocess.run(["rm", "-rf", a.work])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
