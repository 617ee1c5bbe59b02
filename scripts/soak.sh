#!/usr/bin/env bash
# The long chaos soak (tests/fleet/chaos.py; issue 18): spotlaunch on the fake fleet under a
# seeded random fault schedule for G generations, then the test's own checks (every sample of
# every epoch once, parameters bit-identical to an uninterrupted run, no process left, every
# wait within its bound, no damaged file under a final name).
#   scripts/soak.sh [-g GENERATIONS] [-s SEED] [-b BUILD] [-w WORK] [-d DATA_DIR] [-n STEPS]
#     -g  generations to reach (default 100)      -s  seed (default: random, printed first)
#     -n  training steps (default: enough for the generations at 40 ms a step)
#     -b  build directory (default build)         -w  work directory (default /tmp/spottrain-soak)
#     -d  data directory (default Fashion-MNIST of dataset-fashion-mnist)
# Runs as root for the full-volume faults (a tmpfs mount), else without them. The last line
# is "RESULT chaos PASS|FAIL {json}": generations, faults of each kind, wall time, ...
set -euo pipefail
cd "$(dirname "$0")/.."
gens=100 seed="" steps="" build=build work=/tmp/spottrain-soak data=/usr/share/datasets/fashion-mnist
while getopts "g:s:b:w:d:n:" o; do
  case "$o" in
    g) gens=$OPTARG ;;
    s) seed=$OPTARG ;;
    b) build=$OPTARG ;;
    w) work=$OPTARG ;;
    d) data=$OPTARG ;;
    n) steps=$OPTARG ;;
    *) sed -n '2,12p' "$0" >&2; exit 64 ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
args=(--generations "$gens" --spotlaunch "$build/launcher/spotlaunch" --spottrain "$build/src/spottrain"
      --mock-imds "$build/tests/mock_imds/mock_imds" --config configs/tiny.ini --data-dir "$data"
      --work "$work" --shim "$build/tests/iofault/libiofault.so" --min-step-ms 40)
[ -z "$seed" ] || args+=(--seed "$seed")
[ -z "$steps" ] || args+=(--steps "$steps")
exec /usr/bin/python3 tests/fleet/chaos.py "${args[@]}"
