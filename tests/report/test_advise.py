#!/usr/bin/env python3
"""test_advise.py - `spotlaunch advise`: the Young/Daly interval and the waste model on known inputs.

    test_advise.py --spotlaunch BIN

T* = sqrt(2 D M); waste(T) = D/T + T/(2M) [+ R/M]; goodput = 1 - waste;
M = 1 / (rate x nodes). Known values: D = 10 s, M = 1 h gives T* = sqrt(72000)
= 268.328 s, 2683 steps of 0.1 s, waste sqrt(2 D / M) = 7.454%. Usage errors exit 64.
Exit status 0: pass.
"""

import argparse
import json
import math
import subprocess
import sys


def advise(sl, *args, expect=0):
    r = subprocess.run([sl, "advise"] + list(args), capture_output=True, text=True)
    assert r.returncode == expect, "advise %s: exit %d, expected %d\n%s%s" % (
        " ".join(args), r.returncode, expect, r.stdout, r.stderr)
    return json.loads(r.stdout) if expect == 0 and "--json" in args else r


def near(a, b, tol, what):
    assert abs(a - b) <= tol, "%s: %.9g, expected %.9g" % (what, a, b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spotlaunch", required=True)
    sl = ap.parse_args().spotlaunch

    # D = 10 s, M = 1 h
    a = advise(sl, "--write-s", "10", "--mtbf-hours", "1", "--json")
    near(a["optimal_interval_s"], 268.328157, 1e-5, "T* for D=10 s, M=1 h")
    near(a["optimal_interval_s"], math.sqrt(2 * 10 * 3600), 1e-9, "T* = sqrt(2 D M)")
    near(a["optimal_waste_checkpoint"], 10 / 268.328157, 1e-8, "D/T*")
    near(a["optimal_waste_rework"], 268.328157 / 7200, 1e-8, "T*/(2M)")
    near(a["optimal_goodput"], 1 - math.sqrt(2 * 10 / 3600), 1e-9, "goodput at T* = 1 - sqrt(2D/M)")
    assert a["optimal_interval_steps"] is None and a["expected_goodput"] is None, a
    assert a["model_holds"] is True

    # the same M from a rate per node-hour: 0.25 per node-hour on 4 nodes; steps of 0.1 s; every 1000 steps
    b = advise(sl, "--write-s", "10", "--rate-per-node-hour", "0.25", "--nodes", "4", "--step-s", "0.1",
               "--interval-steps", "1000", "--json")
    near(b["mtbf_s"], 3600, 1e-9, "M = 1/(rate x nodes)")
    near(b["optimal_interval_s"], a["optimal_interval_s"], 1e-9, "T* from the rate")
    assert b["optimal_interval_steps"] == 2683, b["optimal_interval_steps"]
    near(b["interval_s"], 100, 1e-9, "K x step")
    near(b["waste_checkpoint"], 0.1, 1e-12, "D/T at T = 100 s")
    near(b["waste_rework"], 100 / 7200, 1e-12, "T/(2M) at T = 100 s")
    near(b["expected_goodput"], 1 - 0.1 - 100 / 7200, 1e-12, "goodput at the configured interval")

    # a restart cost adds R/M whatever the interval
    c = advise(sl, "--write-s", "10", "--mtbf-hours", "1", "--restart-s", "120", "--step-s", "0.1",
               "--interval-steps", "1000", "--json")
    near(c["waste_restart"], 120 / 3600, 1e-12, "R/M")
    near(c["expected_goodput"], 1 - 0.1 - 100 / 7200 - 120 / 3600, 1e-12, "goodput with restarts")
    near(c["optimal_goodput"], 1 - math.sqrt(2 * 10 / 3600) - 120 / 3600, 1e-9, "best goodput with restarts")

    # goodput never below 0: checkpoints longer than the time between interruptions
    d = advise(sl, "--write-s", "600", "--mtbf-hours", "0.1", "--step-s", "1", "--interval-steps", "10", "--json")
    assert d["expected_goodput"] == 0 and d["model_holds"] is False, d

    # the text names the formula and the numbers
    t = advise(sl, "--write-s", "10", "--mtbf-hours", "1", "--step-s", "0.1").stdout
    assert "sqrt(2 D M)" in t and "268.3 s" in t and "2683 steps" in t, t

    # usage errors
    advise(sl, "--mtbf-hours", "1", expect=64)                                     # no D
    advise(sl, "--write-s", "10", expect=64)                                       # no M
    advise(sl, "--write-s", "10", "--mtbf-hours", "1", "--rate-per-node-hour", "1", "--nodes", "2", expect=64)
    advise(sl, "--write-s", "10", "--rate-per-node-hour", "1", expect=64)         # rate without nodes
    advise(sl, "--write-s", "0", "--mtbf-hours", "1", expect=64)
    advise(sl, "--write-s", "x", "--mtbf-hours", "1", expect=64)
    advise(sl, "--write-s", "10", "--mtbf-hours", "1", "--interval-steps", "5", expect=64)  # steps without --step-s
    assert advise(sl, "--help").stdout.startswith("usage: spotlaunch advise")
    print("PASS advise: T* %.3f s (%d steps), goodput at T* %.4f, at 1000 steps %.4f" % (
        b["optimal_interval_s"], b["optimal_interval_steps"], b["optimal_goodput"], b["expected_goodput"]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print("FAIL: %s" % e)
        sys.exit(1)
