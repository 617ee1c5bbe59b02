#!/usr/bin/env python3
"""test_report.py - `spotlaunch report` on a run with two interruptions.

    test_report.py --spotlaunch BIN --work DIR (--run DIR | --simulate --spottrain BIN --mock-imds BIN
                   --config tiny.ini --data-dir DIR)

--run names a run directory (events.jsonl, metrics.jsonl) of a simulated spot
run with an interruption notice and a failure without notice: the committed
fixture (fixtures/two_interruptions). --simulate records such a run first, on
the fake fleet (interrupted_run.py, about 15 s). The run is copied to --work,
so the source is never written. Checks:

1. the report draws report.png (a PNG of 1200 x 1300) and marks both
   interruptions: report.json lists the two incidents with their notice, stop,
   fault, relaunch and first step times, report.gp shades and labels both, and
   report-marks.dat holds the notice, the agreed stop and the failure;
2. its steps lost, time down, rework, time lost, goodput, node-hours, cost and
   checkpoint advice equal what the JSON lines say, computed here
   independently (reportcheck.independent_figures), and its goodput and steps
   lost are those of `spotlaunch status --json`;
3. prices come from RUN/launcher/prices.json when the command line gives none,
   and the command line wins;
4. with gnuplot missing it says so, exits 83 and still writes the data, the
   script and report.json.
Exit status 0: pass.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reportcheck as rc  # noqa: E402

W, H = 1200, 1300


def run(cmd, expect=0):
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == expect, "%s: exit %d, expected %d\nstdout:\n%s\nstderr:\n%s" % (
        " ".join(cmd), r.returncode, expect, r.stdout[-4000:], r.stderr[-4000:])
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spotlaunch", required=True)
    ap.add_argument("--run")
    ap.add_argument("--work", required=True)
    ap.add_argument("--simulate", action="store_true")
    for k in ("--spottrain", "--mock-imds", "--config", "--data-dir"):
        ap.add_argument(k)
    args = ap.parse_args()
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    if args.simulate:
        args.run = os.path.join(work, "recorded")
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "interrupted_run.py"),
               "--spotlaunch", args.spotlaunch, "--spottrain", args.spottrain, "--mock-imds", args.mock_imds,
               "--config", args.config, "--data-dir", args.data_dir, "--work", os.path.join(work, "sim"),
               "--out", args.run]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, "the simulated run failed:\n%s\n%s" % (r.stdout[-3000:], r.stderr[-6000:])
    assert args.run, "--run DIR or --simulate"
    run_dir = os.path.join(work, "run")
    os.makedirs(os.path.join(run_dir, "launcher"))
    for name in ("events.jsonl", "metrics.jsonl"):
        shutil.copyfile(os.path.join(args.run, name), os.path.join(run_dir, name))
    sl = args.spotlaunch
    spot, ondemand = 0.35, 1.20

    # 1. the picture and the marks
    r = run([sl, "report", run_dir, "--spot-price", str(spot), "--ondemand-price", str(ondemand), "--currency", "USD"])
    text = r.stdout
    png = os.path.join(run_dir, "report.png")
    assert rc.png_size(png) == (W, H), "report.png is %s, expected %dx%d" % (rc.png_size(png), W, H)
    assert "time lost per incident" in text and "notice" in text and "failure" in text, text
    with open(os.path.join(run_dir, "report.json")) as f:
        rep = json.load(f)
    assert rep["png"] == png, rep["png"]
    incs = rep["incidents"]
    assert [x["kind"] for x in incs] == ["notice", "failure"], [x["kind"] for x in incs]
    m0, m1 = incs[0]["marks"], incs[1]["marks"]
    for key in ("notice", "stop", "fault", "relaunch", "first_step"):
        assert m0[key] is not None, "incident 1 lacks its %s mark: %s" % (key, m0)
    for key in ("fault", "detected", "relaunch", "first_step"):
        assert m1[key] is not None, "incident 2 lacks its %s mark: %s" % (key, m1)
    assert m1["notice"] is None and m1["stop"] is None, m1
    assert m0["notice"] <= m0["stop"] <= m0["relaunch"] <= m0["first_step"], m0
    assert m1["fault"] <= m1["detected"] <= m1["relaunch"] <= m1["first_step"], m1
    with open(os.path.join(run_dir, "report.gp")) as f:
        gp = f.read()
    for k in (1, 2):
        assert "set object %d rect" % k in gp, "no band for incident %d" % k
    assert 'set label 1 "#1 notice %s' % incs[0]["node"] in gp, "no label for the notice"
    assert 'set label 2 "#2 failure' in gp, "no label for the failure"
    with open(os.path.join(run_dir, "report-marks.dat")) as f:
        blocks = f.read().split("\n\n\n")
    rows = [[l for l in b.splitlines() if l and not l.startswith("#")] for b in blocks]
    assert len(rows) == 6, "%d blocks in report-marks.dat" % len(rows)
    assert len(rows[3]) == 1 and len(rows[4]) == 1 and len(rows[5]) == 1, rows[3:]  # failure, stop, notice
    assert len(rows[2]) == 3, "launches: %s" % rows[2]

    # 2. the figures, independently
    ind = rc.independent_figures(run_dir)
    assert len(ind["incidents"]) == 2
    for k, (got, want) in enumerate(zip(incs, ind["incidents"])):
        what = "incident %d" % (k + 1)
        assert got["kind"] == want["kind"] and got["node"] == want["node"], (got, want)
        assert got["steps_lost"] == want["steps_lost"], "%s: steps lost %s vs %s" % (what, got["steps_lost"],
                                                                                    want["steps_lost"])
        for key in ("down_s", "rework_s", "lost_s"):
            rc.close(got[key], want[key], 1e-3, "%s %s" % (what, key))
        for key, v in want["marks"].items():
            if v is not None:
                rc.close(got["marks"][key], v, 1e-3, "%s mark %s" % (what, key))
    assert incs[0]["steps_lost"] == 0 and incs[1]["steps_lost"] > 0, incs
    rc.close(rep["lost_s"], sum(x["lost_s"] for x in ind["incidents"]), 2e-3, "time lost in all")
    rc.close(rep["wall_s"], ind["wall_s"], 1e-3, "wall time")
    rc.close(rep["useful_s"], ind["useful_s"], 1e-3, "useful time")
    rc.close(rep["goodput"], ind["goodput"], 1e-4, "goodput")
    rc.close(rep["node_hours"] * 3600, ind["node_s"], 1e-2, "node-seconds held")
    rc.close(rep["useful_node_hours"] * 3600, ind["useful_node_s"], 1e-2, "useful node-seconds")
    cost = rep["cost"]
    rc.close(cost["spot"], ind["node_s"] / 3600 * spot, 1e-8, "spot cost")
    rc.close(cost["ondemand"], ind["useful_node_s"] / 3600 * ondemand, 1e-8, "on-demand cost")
    assert cost["prices_from"] == "command line" and cost["currency"] == "USD", cost
    rc.close(rep["step_s"], ind["step_s"], 1e-9, "median step time")
    adv = rep["advice"]
    rc.close(adv["write_s"], ind["write_s"], 1e-9, "checkpoint write time D")
    mtbf = ind["billed_s"] / 2
    rc.close(adv["mtbf_s"], mtbf, 1e-3, "M (wall time per interruption)")
    rc.close(adv["restart_s"], (ind["incidents"][0]["down_s"] + ind["incidents"][1]["down_s"]) / 2, 1e-3, "R")
    t_opt = math.sqrt(2 * ind["write_s"] * mtbf)
    rc.close(adv["optimal_interval_s"], t_opt, 1e-3, "T* = sqrt(2 D M)")
    assert adv["interval_steps"] == 50, "checkpoint interval from the events: %s" % adv["interval_steps"]
    T = 50 * ind["step_s"]
    want_g = max(0.0, 1 - ind["write_s"] / T - T / (2 * mtbf) - adv["restart_s"] / mtbf)
    rc.close(adv["expected_goodput"], want_g, 1e-6, "expected goodput at the configured interval")
    st = json.loads(run([sl, "status", run_dir, "--json"]).stdout)
    assert rep["status"] == st, "report.json's status differs from spotlaunch status --json"
    assert st["goodput"] == rep["goodput"] and st["steps_lost"] == sum(x["steps_lost"] for x in incs), st

    # 3. prices from RUN/launcher/prices.json, the command line wins
    with open(os.path.join(run_dir, "launcher", "prices.json"), "w") as f:
        json.dump({"spot_per_node_hour": 0.5, "ondemand_per_node_hour": 2.0, "currency": "EUR"}, f)
    rep2 = json.loads(run([sl, "report", run_dir, "--json", "--no-plot"]).stdout)
    assert rep2["cost"]["prices_from"] == "launcher/prices.json" and rep2["cost"]["currency"] == "EUR", rep2["cost"]
    rc.close(rep2["cost"]["spot"], ind["node_s"] / 3600 * 0.5, 1e-8, "spot cost from prices.json")
    rep3 = json.loads(run([sl, "report", run_dir, "--json", "--no-plot", "--spot-price", "0.1"]).stdout)
    rc.close(rep3["cost"]["spot"], ind["node_s"] / 3600 * 0.1, 1e-8, "spot cost from the command line")
    rc.close(rep3["cost"]["ondemand"], ind["useful_node_s"] / 3600 * 2.0, 1e-8, "on-demand cost from prices.json")

    # 4. no gnuplot: exit 83, everything else written
    out = os.path.join(work, "nogp", "r.png")
    os.makedirs(os.path.dirname(out))
    r = run([sl, "report", run_dir, "--out", out, "--gnuplot", os.path.join(work, "no-such-gnuplot")], expect=83)
    assert "gnuplot" in r.stderr and "not installed" in r.stderr, r.stderr
    for suffix in (".json", ".gp", "-loss.dat", "-acc.dat", "-progress.dat", "-world.dat", "-marks.dat"):
        assert os.path.exists(os.path.join(work, "nogp", "r" + suffix)), "r%s was not written" % suffix
    assert not os.path.exists(out), "a PNG without gnuplot"
    run([sl, "report", os.path.join(work, "no-such-run")], expect=66)
    run([sl, "report"], expect=64)

    print("PASS report: incidents %s; goodput %.3f; lost %.2f s; spot %.6f vs on-demand %.6f USD; T* %.2f s" % (
        [(x["kind"], x["steps_lost"], round(x["down_s"], 2), round(x["rework_s"], 3)) for x in incs],
        rep["goodput"], rep["lost_s"], cost["spot"], cost["ondemand"], adv["optimal_interval_s"]))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print("FAIL: %s" % e)
        sys.exit(1)
