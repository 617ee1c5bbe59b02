#!/usr/bin/env python3
"""scenarios.py - spotlaunch on a fleet of fake nodes: one scenario per run.

    scenarios.py NAME --spotlaunch BIN --spottrain BIN --config tiny.ini --data-dir DIR --work DIR

Each scenario starts spotlaunch on a fake fleet (fleet.py), injects its faults
when rank 0's heartbeat reaches a given step (not after fixed sleeps, so the
outcome does not depend on the machine's speed), waits for the launcher, and
checks its exit code, `spotlaunch status --json`, and, for every run that
finishes, the exactly-once chain of steps from the workers' own records
(fleet.exactly_once_chain). At most one training mpirun may run at any time
(sampled throughout). The last line printed is "RESULT NAME {json}" with the
measured figures. Exit status 0: pass; 1: fail.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet as fl  # noqa: E402

MIN_STEP_MS = 4
CKPT_EVERY = 50


class Run:
    """One scenario's fleet, run directory and launcher processes."""

    def __init__(self, name, args):
        self.name = name
        self.args = args
        self.work = os.path.join(os.path.abspath(args.work), name)
        self.fleet = fl.Fleet(os.path.join(self.work, "sim"))
        self.run_dir = os.path.join(self.work, "run")
        subprocess.run(["rm", "-rf", self.run_dir], check=True)
        self.counter = fl.MpirunCounter(self.fleet, interval=0.05)
        self.counter.start()
        self.launches = 0
        self.proc = None
        self.t_start = time.monotonic()

    def worker(self, max_steps, epochs, sets=()):
        w = [self.args.spottrain, "train", "--config", self.args.config, "--data-dir", self.args.data_dir,
             "--threads", "1", "--max-steps", str(max_steps),
             "--set", "train.epochs=%d" % epochs,
             "--set", "checkpoint.every_steps=%d" % CKPT_EVERY,
             "--set", "checkpoint.keep=100000",
             "--set", "run.log_every=10",
             "--set", "spot.provider=none",
             "--set", "dist.collective_timeout_s=30",
             # tiny.ini trains thousands of steps a second on an idle machine: pace the steps
             # (a few ms, like a real model) so that faults and rescales triggered at a step
             # land long before the run's last step, whatever the machine's load
             "--set", "run.min_step_ms=%d" % MIN_STEP_MS]
        for s in sets:
            w += ["--set", s]
        return w

    def launcher_argv(self, min_np, max_np, worker, opts=(), discover=False):
        source = ["--discover", self.fleet.discover_cmd()] if discover else ["--hostfile", self.fleet.hostfile]
        a = [self.args.spotlaunch, "run"] + source + ["--min-np", str(min_np),
             "--max-np", str(max_np), "--run-dir", self.run_dir, "--backoff", "0.5", "--kill-grace", "2",
             "--progress-timeout", "30", "--start-timeout", "40", "--stop-timeout", "30", "--probe-timeout", "5"]
        a += list(opts)
        for m in self.fleet.mpirun_args():
            a.append("--mpirun-arg=" + m)
        return a + ["--"] + worker

    def start(self, argv):
        self.launches += 1
        out = open(os.path.join(self.work, "launcher-%d.out" % self.launches), "w")
        err = open(os.path.join(self.work, "launcher-%d.err" % self.launches), "w")
        self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=self.fleet.env(), cwd=self.work)
        return self.proc

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the launcher did not end within %.0f s" % timeout)

    def stderr(self, n=None):
        with open(os.path.join(self.work, "launcher-%d.err" % (n or self.launches))) as f:
            return f.read()

    def wait_step(self, step, generation=None, timeout=60):
        """Wait until rank 0's heartbeat shows step >= step (in generation, if given); returns (step, gen, wall)."""
        def ok():
            hb = fl.heartbeat(self.run_dir)
            if hb and hb[0] >= step and (generation is None or hb[1] == generation):
                return hb
            if self.proc and self.proc.poll() is not None:
                raise AssertionError("the launcher ended (exit %d) before step %d" % (self.proc.returncode, step))
            return None
        return fl.wait_for(ok, timeout, "step %d%s" % (step, "" if generation is None else
                                                         " of generation %d" % generation), poll=0.005)

    def status(self):
        r = subprocess.run([self.args.spotlaunch, "status", self.run_dir, "--json"], capture_output=True,
                           text=True, check=True)
        return json.loads(r.stdout)

    def close(self):
        self.counter.stop()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.fleet.cleanup()


def common_checks(run, st, final_step):
    """A finished run: exit events, exactly-once chain, one mpirun at a time."""
    assert st["finished"], "status says the run did not finish: %s" % st
    assert st["final_step"] == final_step, "final step %s, expected %d" % (st["final_step"], final_step)
    chain = fl.exactly_once_chain(run.run_dir, final_step)
    assert run.counter.max_seen <= 1, "%d training mpiruns ran at once" % run.counter.max_seen
    return chain


def incident_summary(st):
    out = []
    for x in st["incidents"]:
        out.append({k: (round(v, 3) if isinstance(v, float) else v) for k, v in x.items()
                    if k in ("generation", "kind", "reason", "last_step", "resumed_step", "steps_lost",
                             "failed_launches", "detect_s", "kill_s", "relaunch_s", "start_s", "first_step_s",
                             "total_s", "notice_to_durable_s")})
    return out


def world_sizes(st):
    return [(w["generation"], w["np"], w["hosts"], w["outcome"]) for w in st["world"]]


# ---------------------------------------------------------------- scenarios

def notice_replace(run):
    """(1) Notice on one of 4 nodes; the node is removed 2 s later and a replacement added 5 s later.

    Expect: an agreed stop (no step lost), the next generation on the 3 others
    at once, a scale-up to 4 when the replacement appears (again no step lost),
    and final parameters equal to an uninterrupted 4-rank run within 1e-5.
    """
    steps = 2000  # long enough that generation 2 still runs when the replacement comes
    f = run.fleet
    f.add("node0", "node1", "node2", "node3")
    run.start(run.launcher_argv(2, 4, run.worker(steps, 3)))
    run.wait_step(150, generation=1)
    t0 = time.monotonic()
    f.notice("node1", run.run_dir)
    time.sleep(max(0, t0 + 2 - time.monotonic()))
    f.kill("node1")
    f.remove("node1")
    time.sleep(max(0, t0 + 5 - time.monotonic()))
    f.add("node4")
    rc = run.wait(120)
    assert rc == 0, "launcher exit %d" % rc
    st = run.status()
    chain = common_checks(run, st, steps)
    assert st["steps_lost"] == 0, "steps were lost: %s" % st["incidents"]
    assert st["failures"] == 0, "failures: %s" % st["incidents"]
    ws = st["world"]
    assert [w["np"] for w in ws] == [4, 3, 4], "world sizes %s" % world_sizes(st)
    assert "node1" not in ws[1]["hosts"].split(","), "the noticed node was in the next world"
    assert "node4" in ws[2]["hosts"].split(","), "the replacement was not used"
    assert st["incidents"][1]["kind"] == "rescale"

    # the same run without interruptions, for the parameters
    ref = os.path.join(run.work, "reference")
    subprocess.run(["rm", "-rf", ref], check=True)
    ref_hosts = os.path.join(run.work, "reference.hosts")
    with open(ref_hosts, "w") as h:
        h.write("".join("ref%d slots=1\n" % i for i in range(4)))
    w = run.worker(steps, 3)
    cmd = (["mpirun", "--hostfile", ref_hosts, "-np", "4"] + f.mpirun_args() + w + ["--run-dir", ref])
    t = time.monotonic()
    subprocess.run(cmd, env=f.env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=run.work)
    ref_s = time.monotonic() - t
    rel = fl.params_rel_diff(os.path.join(run.run_dir, "final.h5"), os.path.join(ref, "final.h5"))
    assert rel <= 1e-5, "final parameters differ from the uninterrupted run by %.3g (relative)" % rel
    return {"chain": chain, "world": world_sizes(st), "incidents": incident_summary(st), "goodput": st["goodput"],
            "wall_s": st["wall_s"], "params_rel_diff": rel, "reference_wall_s": round(ref_s, 2),
            "fleet_log": [(round(t - t0, 2), a) for t, a in f.log]}


def kill_no_notice(run):
    """(2) A node is killed without notice; the autoscaler drops it 2 s later.

    Expect: recovery from the newest periodic checkpoint, steps lost at most
    the checkpoint interval, the run finishes on the 3 others.
    """
    steps = 700
    f = run.fleet
    f.add("node0", "node1", "node2", "node3")
    run.start(run.launcher_argv(2, 4, run.worker(steps, 1)))
    # mid-interval, so that the newest periodic checkpoint is certainly durable
    hb = run.wait_step(225, generation=1)
    t0 = time.monotonic()
    f.kill("node2")
    time.sleep(2)
    f.remove("node2")
    rc = run.wait(120)
    assert rc == 0, "launcher exit %d" % rc
    st = run.status()
    chain = common_checks(run, st, steps)
    inc = st["incidents"][0]
    assert inc["kind"] == "failure", inc
    assert inc["steps_lost"] <= CKPT_EVERY, "lost %d steps, more than the checkpoint interval" % inc["steps_lost"]
    assert inc["resumed_step"] == (inc["last_step"] // CKPT_EVERY) * CKPT_EVERY, \
        "resumed from %d, not the newest periodic checkpoint before step %d" % (inc["resumed_step"], inc["last_step"])
    assert st["world"][-1]["np"] == 3 and "node2" not in st["world"][-1]["hosts"]
    return {"killed_at_step": hb[0], "chain": chain, "world": world_sizes(st), "incidents": incident_summary(st),
            "goodput": st["goodput"], "wall_s": st["wall_s"], "failures": st["failures"],
            "fleet_log": [(round(t - t0, 2), a) for t, a in f.log]}


def two_lost(run):
    """(3) Two of four nodes lost at once, no replacement, min-np 2: continue on 2 and finish."""
    steps = 700
    f = run.fleet
    f.add("node0", "node1", "node2", "node3")
    run.start(run.launcher_argv(2, 4, run.worker(steps, 1)))
    hb = run.wait_step(225, generation=1)
    t0 = time.monotonic()
    f.kill("node1")
    f.kill("node3")
    time.sleep(2)
    f.remove("node1", "node3")
    rc = run.wait(120)
    assert rc == 0, "launcher exit %d" % rc
    st = run.status()
    chain = common_checks(run, st, steps)
    last = st["world"][-1]
    assert last["np"] == 2 and set(last["hosts"].split(",")) == {"node0", "node2"}, world_sizes(st)
    assert all(x["steps_lost"] <= CKPT_EVERY for x in st["incidents"]), st["incidents"]
    return {"killed_at_step": hb[0], "chain": chain, "world": world_sizes(st), "incidents": incident_summary(st),
            "goodput": st["goodput"], "wall_s": st["wall_s"],
            "fleet_log": [(round(t - t0, 2), a) for t, a in f.log]}


def below_min(run):
    """(4) Below min-np with no replacement: a clear failure (exit 69) after --wait-timeout.

    Then capacity returns and the same command continues the run to the end.
    """
    steps = 600
    wait_timeout = 5
    f = run.fleet
    f.add("node0", "node1", "node2", "node3")
    argv = run.launcher_argv(3, 4, run.worker(steps, 1), ["--wait-timeout", str(wait_timeout)])
    run.start(argv)
    run.wait_step(150, generation=1)
    t0 = time.monotonic()
    f.kill("node1")
    f.kill("node2")
    f.remove("node1", "node2")
    rc = run.wait(60)
    gave_up_s = time.monotonic() - t0
    err = run.stderr()
    assert rc == 69, "launcher exit %d, expected 69" % rc
    assert "fewer than --min-np 3" in err and "--wait-timeout" in err, err[-2000:]
    # detection, the probes of the world (dead hosts fail at once, live ones answer), backoff, then the wait
    assert wait_timeout <= gave_up_s <= wait_timeout + 15, "gave up after %.1f s" % gave_up_s
    st1 = run.status()
    assert not st1["finished"]
    # capacity returns: the same command continues from the newest checkpoint
    f.add("node4", "node5")
    run.start(argv)
    rc = run.wait(120)
    assert rc == 0, "second launcher exit %d" % rc
    st = run.status()
    chain = common_checks(run, st, steps)
    return {"exit_code": 69, "gave_up_after_s": round(gave_up_s, 2), "message": [l for l in err.splitlines()
                                                                                 if "fewer than" in l][-1],
            "then": {"chain": chain, "world": world_sizes(st), "incidents": incident_summary(st)}}


def scale_up(run):
    """(5) Capacity returns: 2 -> 4 ranks by an agreed stop (SIGUSR1), without losing a step.

    Hosts come from a discovery command here (host:slots lines, run every second).
    """
    steps = 1500  # the rescale waits for discovery (1 s), the settle time (1 s) and a step; plenty left
    f = run.fleet
    f.add("node0", "node1")
    run.start(run.launcher_argv(2, 4, run.worker(steps, 2), discover=True))
    hb = run.wait_step(100, generation=1)
    t0 = time.monotonic()
    f.add("node2", "node3")
    rc = run.wait(120)
    assert rc == 0, "launcher exit %d" % rc
    st = run.status()
    chain = common_checks(run, st, steps)
    assert [w["np"] for w in st["world"]] == [2, 4], world_sizes(st)
    assert st["steps_lost"] == 0 and st["failures"] == 0, st["incidents"]
    assert st["incidents"][0]["kind"] == "rescale"
    return {"added_at_step": hb[0], "chain": chain, "world": world_sizes(st), "incidents": incident_summary(st),
            "goodput": st["goodput"], "wall_s": st["wall_s"],
            "fleet_log": [(round(t - t0, 2), a) for t, a in f.log]}


def leftovers(fleet):
    """pid, state, node and command line of each live process of the fleet."""
    out = []
    for p in fleet.pids():
        try:
            with open("/proc/%d/cmdline" % p, "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")[:100]
        except OSError:
            continue
        node = [v.decode(errors="replace") for v in (fl._environ(p) or []) if v.startswith(b"SIM_NODE=")]
        st = fl._state(p)
        out.append("%d %s %s %s" % (p, st[0] if st else "?", node[0] if node else "-", cmd))
    return out


def frozen(run):
    """(6) A frozen (or partitioned) node: no progress for --progress-timeout, killed, probed, re-formed.

    The workers' own collective timeout is set far higher, so the launcher is
    what detects it. The node stays in the hostfile and launches on it hang,
    so the health probe must find it and quarantine it.
    """
    steps = 700
    progress_timeout, kill_grace, probe_timeout = 3, 2, 5
    f = run.fleet
    f.add("node0", "node1", "node2", "node3")
    w = run.worker(steps, 1, ["dist.collective_timeout_s=600"])
    run.start(run.launcher_argv(2, 4, w, ["--progress-timeout", str(progress_timeout), "--kill-grace",
                                          str(kill_grace), "--probe-timeout", str(probe_timeout),
                                          "--quarantine", "600"]))
    hb = run.wait_step(200, generation=1)
    t0 = time.monotonic()
    f.freeze("node2")
    rc = run.wait(120)
    assert rc == 0, "launcher exit %d" % rc
    st = run.status()
    chain = common_checks(run, st, steps)
    inc = st["incidents"][0]
    assert inc["kind"] == "failure" and "frozen" in inc["reason"], inc
    assert inc["detect_s"] <= progress_timeout + 1.0, "detected after %.2f s" % inc["detect_s"]
    bound = progress_timeout + kill_grace + probe_timeout + 0.5 + 15
    assert inc["total_s"] <= bound, "recovered after %.1f s (bound %.1f)" % (inc["total_s"], bound)
    assert inc["steps_lost"] <= CKPT_EVERY
    assert "node2" not in st["world"][-1]["hosts"].split(","), world_sizes(st)
    # node2 stays frozen, so the probe's rsh agent (rsh_shim.sh, like ssh) never ends by
    # itself: the launcher must have killed it with the probe's mpirun, and nothing else
    # of the fleet may outlive the launcher
    try:
        fl.wait_for(lambda: not f.pids(), 30, "every process of the fleet to end")
    except AssertionError:
        raise AssertionError("processes left behind: %s" % leftovers(f))
    return {"frozen_at_step": hb[0], "chain": chain, "world": world_sizes(st), "incidents": incident_summary(st),
            "goodput": st["goodput"], "wall_s": st["wall_s"],
            "fleet_log": [(round(t - t0, 2), a) for t, a in f.log]}


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return []


def adopted_hang(run):
    """(6b) An adopted mpirun ends with an rsh agent hung: nothing of its session may be left behind.

    node2 is frozen from the start, so generation 1's mpirun hangs launching
    its daemon there (rsh_shim.sh, like ssh to a partitioned host). The
    launcher is killed (-9) and started again; the new one adopts that mpirun,
    which is not its child. SIGTERM to it before any first step: it ends the
    mpirun (SIGTERM, SIGKILL after --kill-grace) and exits 75, and must have
    killed what is left of the mpirun's session (the hung agent is in a
    process group of its own, so the group kill misses it) as it does for a
    child: no process of the fleet may be left.
    """
    return hung_agent_of_earlier_mpirun(run, unwatched=False)


def unwatched_hang(run):
    """(6c) As adopted_hang, but the mpirun is killed (-9) while no launcher runs: the launcher started
    again finds it ended, must still kill what is left of its session (the hung agent), probes the
    world (node2 hangs: quarantined) and finishes the run on the other three."""
    return hung_agent_of_earlier_mpirun(run, unwatched=True)


def hung_agent_of_earlier_mpirun(run, unwatched):
    steps = 300
    f = run.fleet
    f.add("node0", "node1", "node2", "node3")
    f.freeze("node2")
    # --start-timeout 600: nothing but the test's own actions ends generation 1
    argv = run.launcher_argv(2, 4, run.worker(steps, 1), ["--kill-grace", "2", "--probe-timeout", "5",
                                                          "--quarantine", "600", "--start-timeout", "600"])
    run.start(argv)

    def hung_agents():
        return [p for p in f.pids() if any(a.endswith(b"rsh_shim.sh") for a in cmdline(p))
                and b"node2" in cmdline(p)]
    agents = fl.wait_for(hung_agents, 60, "generation 1's rsh agent hung on node2")
    mpiruns = f.mpiruns()
    assert len(mpiruns) == 1, "mpiruns %s" % mpiruns
    run.proc.kill()
    run.proc.wait()
    if unwatched:
        os.kill(mpiruns[0], signal.SIGKILL)
        fl.wait_for(lambda: (fl._state(mpiruns[0]) or "Z")[0] in "ZX", 30, "mpirun %d to end" % mpiruns[0])
        assert set(agents) <= set(f.pids()), "the hung agent ended with its mpirun: nothing to test"
    t0 = time.monotonic()
    run.start(argv)
    result = {"mpirun": mpiruns[0], "hung_agent": agents}
    if unwatched:
        rc = run.wait(180)
        assert rc == 0, "launcher exit %d" % rc
        err = run.stderr(2)
        assert "the mpirun of generation 1 ended while no launcher watched it" in err, err[-2000:]
        st = run.status()
        result["chain"] = common_checks(run, st, steps)
        assert st["generations"] == 2, world_sizes(st)
        assert "node2" not in st["world"][-1]["hosts"].split(","), world_sizes(st)
        result["world"] = world_sizes(st)
    else:
        fl.wait_for(lambda: "adopting mpirun %d of generation 1" % mpiruns[0] in run.stderr(), 30, "the adoption")
        run.proc.send_signal(signal.SIGTERM)
        rc = run.wait(60)
        assert rc == 75, "launcher exit %d, expected 75" % rc
        assert not f.mpiruns(), "an mpirun outlived the launcher"
    # node2 stays frozen: its agent never ends by itself (nor does a probe's, which the launcher
    # kills with the probe); nothing of the fleet may outlive the launcher
    try:
        fl.wait_for(lambda: not f.pids(), 30, "every process of the fleet to end")
    except AssertionError:
        raise AssertionError("processes left behind (the hung agent was %s): %s" % (agents, leftovers(f)))
    err = run.stderr(2)
    assert "left in the session of mpirun %d" % mpiruns[0] in err, err[-2000:]
    result["seconds_after_restart"] = round(time.monotonic() - t0, 2)
    return result


def launcher_restart(run):
    """(7) The launcher is killed (-9) mid-run and started again, twice: it adopts the running mpirun.

    The second time, state.json is rewritten as if the launcher had died right
    after starting mpirun, before it saved the pid: the new launcher must find
    mpirun by the token in its environment. Expect: the run finishes, at no
    time more than one training mpirun, and no generation is spent on the
    launcher's deaths (the world keeps training meanwhile).
    """
    steps = 1500
    f = run.fleet
    f.add("node0", "node1", "node2", "node3")
    argv = run.launcher_argv(2, 4, run.worker(steps, 2))
    run.start(argv)
    hb = run.wait_step(150, generation=1)
    kills = []
    for phase in ("pid", "token"):
        run.proc.kill()
        run.proc.wait()
        t0 = time.monotonic()
        time.sleep(1.0)
        alive = len(f.mpiruns())
        assert alive == 1, "%d mpirun(s) after the launcher died" % alive
        step_away = fl.heartbeat(run.run_dir)[0]
        kills.append({"phase": phase, "killed_at_step": hb[0], "step_1s_later": step_away})
        assert step_away > hb[0], "training stopped while the launcher was away"
        if phase == "token":
            path = os.path.join(run.run_dir, "launcher", "state.json")
            with open(path) as fh:
                state = json.load(fh)
            assert state["mpirun"]["token"], state
            state["mpirun"]["pid"] = 0
            state["mpirun"]["start_ticks"] = "0"
            with open(path, "w") as fh:
                json.dump(state, fh)
        run.start(argv)
        if phase == "pid":
            fl.wait_for(lambda: "adopting mpirun" in run.stderr(), 30, "the adoption")
            hb = run.wait_step(step_away + 100, generation=1)
    rc = run.wait(120)
    assert rc == 0, "launcher exit %d" % rc
    st = run.status()
    chain = common_checks(run, st, steps)
    assert st["generations"] == 1 and st["steps_lost"] == 0, world_sizes(st)
    assert "adopting mpirun" in run.stderr(2), run.stderr(2)[-2000:]
    assert "found the mpirun of generation 1" in run.stderr(3), run.stderr(3)[-2000:]
    return {"kills": kills, "max_mpiruns": run.counter.max_seen, "samples": run.counter.samples, "chain": chain,
            "world": world_sizes(st), "goodput": st["goodput"], "wall_s": st["wall_s"]}


def launcher_sigterm(run):
    """SIGTERM to the launcher: the workers stop at an agreed step with a checkpoint, the launcher exits 75,
    no mpirun is left; the same command started again finishes the run without a lost step."""
    steps = 700
    f = run.fleet
    f.add("node0", "node1", "node2", "node3")
    argv = run.launcher_argv(2, 4, run.worker(steps, 1))
    run.start(argv)
    hb = run.wait_step(150, generation=1)
    t0 = time.monotonic()
    run.proc.send_signal(15)
    rc = run.wait(60)
    stop_s = time.monotonic() - t0
    assert rc == 75, "launcher exit %d, expected 75" % rc
    assert not f.mpiruns(), "an mpirun outlived the launcher"
    st1 = run.status()
    w = st1["world"][0]
    assert w["outcome"] == "stop:rescale", w
    events = fl.read_jsonl(os.path.join(run.run_dir, "events.jsonl"))
    stop = [e for e in events if e.get("event") == "stop"][-1]
    assert stop["path"].endswith("ckpt-%08d.h5" % stop["step"]) and os.path.exists(stop["path"]), stop
    run.start(argv)
    rc = run.wait(120)
    assert rc == 0, "second launcher exit %d" % rc
    st = run.status()
    chain = common_checks(run, st, steps)
    assert st["steps_lost"] == 0, st["incidents"]
    return {"signalled_at_step": hb[0], "stopped_at_step": stop["step"], "sigterm_to_exit_s": round(stop_s, 2),
            "chain": chain, "world": world_sizes(st), "incidents": incident_summary(st)}


def worker_usage_error(run):
    """The workers exit 64 (bad config): the launcher stops at once with 64 and says so."""
    f = run.fleet
    f.add("node0", "node1")
    run.start(run.launcher_argv(1, 2, run.worker(100, 1, ["no_such.key=1"])))
    rc = run.wait(60)
    err = run.stderr()
    assert rc == 64, "launcher exit %d" % rc
    assert "not retrying" in err, err[-2000:]
    st = run.status()
    assert st["generations"] == 1, world_sizes(st)
    return {"exit_code": rc}


SCENARIOS = {f.__name__: f for f in (notice_replace, kill_no_notice, two_lost, below_min, scale_up, frozen,
                                     adopted_hang, unwatched_hang, launcher_restart, launcher_sigterm, worker_usage_error)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--spotlaunch", required=True)
    ap.add_argument("--spottrain", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the run directory and logs")
    args = ap.parse_args()
    for k in ("spotlaunch", "spottrain", "config", "data_dir", "work"):
        setattr(args, k, os.path.abspath(getattr(args, k)))
    run = Run(args.scenario, args)
    ok = False
    t = time.monotonic()
    try:
        result = SCENARIOS[args.scenario](run)
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
        run.close()
    result["seconds"] = round(time.monotonic() - t, 1)
    print("RESULT %s %s %s" % (args.scenario, "PASS" if ok else "FAIL", json.dumps(result)))
    if ok and not args.keep:
        subprocess.run(["rm", "-rf", run.work])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
