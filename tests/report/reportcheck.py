"""reportcheck.py - helpers of the report tests: PNG headers, and the figures of a
run computed independently of spotlaunch from its JSON lines.

independent_figures() reads events.jsonl and metrics.jsonl of a run started by
spotlaunch (one world per generation number) and computes what `spotlaunch
report` must say, from the definitions in launcher/README.md and
launcher/README.md, not from the C code:

- a world's steps: it begins at its resume (or start) step and reaches the
  furthest step any record of it names (start, first_step, checkpoint, epoch,
  stop, exit, the launcher's relaunch last_step, metrics lines with a loss),
  at the earliest time a record names that step;
- an incident between consecutive worlds that trained: planned when the world
  stopped at an agreed step and exited 75 (not a failure per the launcher),
  its fault time is the stop; otherwise a failure at the launcher's last
  progress; steps lost = furthest step - the next world's resume step;
  down = the next world's first step - the fault; rework = the furthest
  step's time - when the world reached the step resumed from (its metrics
  line of that step, or between the lines around it);
- goodput = the surviving training time (steps below the next world's resume
  point x the world's mean time per step) / (last record - first launch);
- node-hours: each world's distinct hosts x (its launch -> the next launch,
  or the last record), and useful node-hours = surviving time x hosts.
"""

import json
import math
import os
import statistics
import struct

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) of a PNG file from its signature and IHDR chunk; AssertionError if it is not one."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert len(head) == 24 and head[:8] == PNG_SIG, "%s is not a PNG (signature %r)" % (path, head[:8])
    assert head[12:16] == b"IHDR", "%s: no IHDR chunk first" % path
    return struct.unpack(">II", head[16:24])


def read_jsonl(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if isinstance(o, dict):
                out.append(o)
    return out


class World:
    def __init__(self, gen):
        self.gen = gen
        self.launch = None
        self.hosts = []
        self.np = 0
        self.t_start = None
        self.begin = None
        self.records = []       # (step, time)
        self.t_first = None
        self.stop = None        # (step, time, reason)
        self.notice = None      # (time, node)
        self.exit_code = None
        self.relaunch = None
        self.checkpoints = {}   # step -> time

    def reach(self):
        """(furthest step, earliest time of it)."""
        best = max(s for s, _ in self.records)
        return best, min(t for s, t in self.records if s == best)


def independent_figures(run_dir):
    events = read_jsonl(os.path.join(run_dir, "events.jsonl"))
    metrics = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    worlds = {}
    order = []

    def world(g):
        if g not in worlds:
            worlds[g] = World(g)
            order.append(g)
        return worlds[g]

    t_max = 0.0
    for e in events:
        name, t, g = e["event"], e["time"], e.get("generation", 0)
        t_max = max(t_max, t)
        w = world(g)
        if name == "generation":
            w.launch, w.hosts, w.np = t, list(e["hosts"]), e["np"]
        elif name == "start":
            w.t_start = t
            if w.begin is None:
                w.begin = e["step"]
            w.records.append((e["step"], t))
        elif name == "resume":
            w.begin = e["step"]
        elif name == "first_step":
            st = e.get("step_time", t)
            w.t_first = st if w.t_first is None else min(w.t_first, st)
            w.records.append((e["step"], st))
        elif name in ("checkpoint", "epoch"):
            w.records.append((e["step"], t))
            if name == "checkpoint":
                w.checkpoints[e["step"]] = t
        elif name == "notice":
            rcv = e.get("received", t)
            if w.notice is None or rcv < w.notice[0]:
                w.notice = (rcv, e.get("node"))
        elif name == "stop":
            w.stop = (e["step"], t, e.get("reason"))
            w.records.append((e["step"], t))
        elif name == "exit":
            w.exit_code = e["code"]
            w.records.append((e["step"], t))
        elif name == "relaunch":
            w.relaunch = e
            if e.get("last_progress", 0) > 0 and e.get("last_step", -1) >= 0:
                w.records.append((e["last_step"], e["last_progress"]))
    for m in metrics:
        t_max = max(t_max, m.get("time", 0))
        if "loss" not in m:
            continue
        w = worlds[m["generation"]]
        w.records.append((m["step"], m["time"]))
        w.t_first = m["time"] if w.t_first is None else min(w.t_first, m["time"])

    trained = [worlds[g] for g in order if worlds[g].t_start is not None]
    launches = [worlds[g] for g in order if worlds[g].launch is not None]
    t_begin = min(w.launch for w in launches)

    def end(w):
        e = w.reach()[0]
        if w.stop:
            e = max(e, w.stop[0])
        return max(e, w.begin)

    incidents = []
    for p, n in zip(trained, trained[1:]):
        failure = bool(p.relaunch and p.relaunch.get("failure"))
        planned = p.stop is not None and p.exit_code in (None, 75) and not failure
        fault = p.stop[1] if planned else (p.relaunch["last_progress"] if p.relaunch and
                                           p.relaunch.get("last_progress", 0) > 0 else p.reach()[1])
        lost_steps = max(0, end(p) - n.begin)
        rework = 0.0
        if lost_steps:
            rework = p.reach()[1] - time_at(metrics, p, n.begin)
        down = n.t_first - fault
        incidents.append({"generation": p.gen, "next_generation": n.gen,
                          "kind": p.stop[2] if planned else "failure", "node": p.notice[1] if p.notice else None,
                          "steps_lost": lost_steps, "down_s": down, "rework_s": rework, "lost_s": down + rework,
                          "marks": {"notice": p.notice[0] if p.notice else None, "stop": p.stop[1] if p.stop else None,
                                    "fault": fault, "relaunch": n.launch, "first_step": n.t_first}})
    # goodput: walking back from the end
    useful = {}
    bound = None
    for w in reversed(trained):
        b, e = w.begin, end(w)
        t_last = w.reach()[1]
        hi = bound if bound is not None and bound < e else e
        per_step = (t_last - w.t_start) / (e - b) if e > b and t_last > w.t_start else 0.0
        useful[w.gen] = max(0, hi - b) * per_step
        bound = b if bound is None else min(bound, b)
    wall = t_max - t_begin
    # node-hours
    billed = {}
    for i, w in enumerate(launches):
        t1 = launches[i + 1].launch if i + 1 < len(launches) else t_max
        billed[w.gen] = t1 - w.launch
    node_s = sum(len(set(w.hosts)) * billed[w.gen] for w in launches)
    useful_node_s = sum(len(set(worlds[g].hosts)) * u for g, u in useful.items())
    # step time: median over consecutive loss lines of one generation
    per_step = []
    losses = [m for m in metrics if "loss" in m]
    for a, b in zip(losses, losses[1:]):
        if a["generation"] == b["generation"] and b["step"] > a["step"] and b["time"] > a["time"]:
            per_step.append((b["time"] - a["time"]) / (b["step"] - a["step"]))
    writes = [e.get("blocked_s", e.get("write_s", 0)) for e in events if e["event"] == "checkpoint"]
    writes = [w for w in writes if w > 0]
    return {"incidents": incidents, "useful_s": sum(useful.values()), "wall_s": wall,
            "goodput": sum(useful.values()) / wall, "node_s": node_s, "useful_node_s": useful_node_s,
            "billed_s": sum(billed.values()), "step_s": statistics.median(per_step) if per_step else None,
            "write_s": statistics.median(writes) if writes else None, "t_begin": t_begin}


def time_at(metrics, w, step):
    """When world w reached step, from its metrics lines."""
    pts = sorted((m["step"], m["time"]) for m in metrics if "loss" in m and m["generation"] == w.gen)
    for s, t in pts:
        if s == step:
            return t
    lo = [p for p in pts if p[0] < step]
    hi = [p for p in pts if p[0] > step]
    assert lo and hi, "no metrics around step %d of generation %d" % (step, w.gen)
    (s0, t0), (s1, t1) = lo[-1], hi[0]
    return t0 + (t1 - t0) * (step - s0) / (s1 - s0)


def close(a, b, tol, what):
    assert a is not None and b is not None and math.isfinite(a) and math.isfinite(b), "%s: %r vs %r" % (what, a, b)
    assert abs(a - b) <= tol, "%s: spotlaunch says %.6f, the events say %.6f" % (what, a, b)
