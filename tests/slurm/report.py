#!/usr/bin/env python3
"""What a SLURM job of spottrain did, from its run directory (events.jsonl, metrics.jsonl).

usage: report.py RUN_DIR [SIGNAL_TIME...]
Prints one JSON object: per run of the job (one per start event of rank 0) the ranks'
exit codes, the stop step and reason, the step the next run resumed from, the steps
lost, and the seconds from SIGNAL_TIME i (the wall time the test interrupted run i)
to the stop's checkpoint being durable and to the first step of run i+1.
"""
import json
import os
import sys


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def runs_of(events):
    """Split the events into runs: a run begins at each start event; a resume event
    (written just before its run's start event) belongs to the run that follows it."""
    runs, pending = [], []
    for e in events:
        if e["event"] == "start":
            runs.append({"start": e, "events": pending})
            pending = []
        elif e["event"] == "resume" or not runs:
            pending.append(e)
        else:
            runs[-1]["events"].append(e)
    return runs


def main():
    run_dir, signals = sys.argv[1], [float(t) for t in sys.argv[2:]]
    events = lines(os.path.join(run_dir, "events.jsonl"))
    metrics = [m for m in lines(os.path.join(run_dir, "metrics.jsonl")) if "loss" in m]
    runs = runs_of(events)
    out = {"runs": [], "requeues": max(len(runs) - 1, 0)}
    for i, r in enumerate(runs):
        t0 = r["start"]["time"]
        t1 = runs[i + 1]["start"]["time"] if i + 1 < len(runs) else float("inf")
        ev = r["events"]
        stop = [e for e in ev if e["event"] == "stop"]
        resume = [e for e in ev if e["event"] == "resume"]
        steps = [m["step"] for m in metrics if t0 <= m["time"] < t1]
        info = {
            "run": i,
            "start_step": r["start"]["step"],
            "resumed_from": resume[0]["step"] if resume else None,
            "exit_codes": sorted(e["code"] for e in ev if e["event"] == "exit"),
            "last_step": max(steps) if steps else r["start"]["step"],
            "stop_step": stop[0]["step"] if stop else None,
            "stop_reason": stop[0]["reason"] if stop else None,
        }
        if i < len(signals):
            if stop:
                info["signal_to_durable_s"] = round(stop[0]["time"] - signals[i], 3)
            first = [m["time"] for m in metrics if m["time"] >= t1]
            if first:
                info["signal_to_resumed_step_s"] = round(min(first) - signals[i], 3)
        out["runs"].append(info)
    for prev, nxt in zip(out["runs"], out["runs"][1:]):
        prev["resumed_by_next"] = nxt["resumed_from"] if nxt["resumed_from"] is not None else 0
        prev["steps_lost"] = prev["last_step"] - prev["resumed_by_next"]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
