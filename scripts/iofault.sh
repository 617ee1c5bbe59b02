#!/usr/bin/env bash
# Injected I/O errors at every call (tests/iofault/sweep.py; issue 18): for the checkpoint
# files, the worker's events.jsonl and the launcher's state.json, each of open, write, fsync,
# rename and close fails at its N-th call for N = 1, 2, ... (EIO, ENOSPC, EDQUOT in turn) until
# N passes the calls a run makes; ctest's iofault.* run only the first few N.
#   scripts/iofault.sh [-b BUILD] [-w WORK] [-n MAX_N] [TARGET...]   (targets: ckpt events state)
set -euo pipefail
cd "$(dirname "$0")/.."
build=build work=/tmp/spottrain-iofault max_n=40
while getopts "b:w:n:" o; do
  case "$o" in
    b) build=$OPTARG ;;
    w) work=$OPTARG ;;
    n) max_n=$OPTARG ;;
    *) sed -n '2,6p' "$0" >&2; exit 64 ;;
  esac
done
shift $((OPTIND - 1))
[ "$#" -gt 0 ] || set -- ckpt events state
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0:verify_asan_link_order=0"
rc=0
for t in "$@"; do
  /usr/bin/python3 tests/iofault/sweep.py "$t" --max-n "$max_n" --shim "$build/tests/iofault/libiofault.so" \
    --spottrain "$build/src/spottrain" --spotlaunch "$build/launcher/spotlaunch" --config configs/tiny.ini \
    --data-dir /usr/share/datasets/fashion-mnist --work "$work" | grep -E '^(FAIL|RESULT)' || rc=1
done
exit $rc
