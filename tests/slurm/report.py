#!/usr/bin/env python3
"""What a SLURM job of spottrain did, from its run directory (events.jsonl, metrics.jsonl).

usage: report.py RUN_DIR SIGNAL_TIME
Prints one JSON object: per run of the job (one per start event of rank 0) the ranks'
exit codes, the stop step and reason, where the next run resumed, the steps lost, and
the times from SIGNAL_TIME (the wall time the test sent the signal; 0 = none) to the
stop's checkpoint being durable and to the first step of the resumed run.
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
    run_dir, signal_time = sys.argv[1], float(sys.argv[2])
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
            "start_step": r["start"]["step"],
            "resumed_from": resume[0]["step"] if resume else None,
            "exit_codes": sorted(e["code"] for e in ev if e["event"] == "exit"),
            "last_step": max(steps) if steps else r["start"]["step"],
            "stop_step": stop[0]["step"] if stop else None,
            "stop_reason": stop[0]["reason"] if stop else None,
        }
        if stop and signal_time > 0:
            info["signal_to_durable_s"] = round(stop[0]["time"] - signal_time, 3)
        out["runs"].append(info)
    for prev, nxt in zip(out["runs"], out["runs"][1:]):
        resumed = nxt["resumed_from"] if nxt["resumed_from"] is not None else 0
        prev["steps_lost"] = prev["last_step"] - resumed
    if len(runs) > 1 and signal_time > 0:
        t_first = [m["time"] for m in metrics if m["time"] >= runs[1]["start"]["time"]]
        if t_first:
            out["signal_to_resumed_step_s"] = round(min(t_first) - signal_time, 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
