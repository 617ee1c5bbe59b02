#!/usr/bin/env bash
# Real network faults (tests/netns/netns.py; issue 18): spotlaunch on a fleet of network
# namespaces, each scenario a fault on one node of four: link down (no reset), partition of
# one node, random packet loss (nftables: 5%, which TCP survives, and 90%, which loses the node),
# a bandwidth-limited link (tc tbf), loss and delay with tc netem (skipped when the kernel lacks
# sch_netem), node crash.
#   scripts/netns.sh [-b BUILD] [-w WORK] [-d DATA_DIR] [SCENARIO...]
# Needs root (exit 77 with the reason otherwise). The last line is "RESULT netns PASS|FAIL {json}"
# with each scenario's detection time, node loss -> first step, steps lost and parameters.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build work=/tmp/spottrain-netns data=/usr/share/datasets/fashion-mnist
while getopts "b:w:d:" o; do
  case "$o" in
    b) build=$OPTARG ;;
    w) work=$OPTARG ;;
    d) data=$OPTARG ;;
    *) sed -n '2,10p' "$0" >&2; exit 64 ;;
  esac
done
shift $((OPTIND - 1))
[ "$#" -gt 0 ] || set -- link_down partition crash lossy heavy_loss slow_link netem
exec /usr/bin/python3 tests/netns/netns.py "$@" --spotlaunch "$build/launcher/spotlaunch" \
  --spottrain "$build/src/spottrain" --config configs/tiny.ini --data-dir "$data" --work "$work"
