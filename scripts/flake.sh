#!/usr/bin/env bash
# Runs the test suite (or some labels of it) K times and reports every test that failed
# even once, with its count: a test that depends on timing luck shows up here.
#   scripts/flake.sh [-k K] [-L LABEL ...] [-R REGEX] [-b BUILD] [-j JOBS]
#     -k K      runs (default 20)
#     -L LABEL  a CTest label to run (repeatable; default: unit and integration)
#     -R REGEX  only the tests whose names match (with no -L: whatever their label)
#     -b BUILD  an existing build directory (default build-flake, configured Release if absent)
#     -j JOBS   parallel tests per run (default: the number of cores)
#     -x LABEL  leave out the tests of a label (e.g. slow)
# Prints one line per run and, at the end, "test  failures/K" for every test that failed,
# then "N passed, N failed" over all test runs. Exits 1 when any test failed, else 0.
# An integration test that fails keeps its work folder (SPOTTRAIN_IT_KEEP_FAILED; named in the log).
set -euo pipefail
cd "$(dirname "$0")/.."
k=20 build=build-flake jobs=$(nproc) labels=() exclude=() by_name=()
while getopts "k:L:R:b:j:x:" o; do
  case "$o" in
    k) k=$OPTARG ;;
    L) labels+=("$OPTARG") ;;
    R) by_name=(-R "$OPTARG") ;;
    b) build=$OPTARG ;;
    j) jobs=$OPTARG ;;
    x) exclude=(-LE "^$OPTARG\$") ;;
    *) sed -n '2,14p' "$0" >&2; exit 64 ;;
  esac
done
[ "${#labels[@]}" -gt 0 ] || [ "${#by_name[@]}" -gt 0 ] || labels=(unit integration)
case "$k" in '' | *[!0-9]* | 0) echo "flake: -k wants a positive number" >&2; exit 64 ;; esac
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j"$jobs" >/dev/null
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export SPOTTRAIN_IT_KEEP_FAILED=1
select=("${by_name[@]}")
[ "${#labels[@]}" -eq 0 ] || select+=(-L "$(IFS='|'; echo "^(${labels[*]})\$")")
declare -A failed=()
passes=0 fails=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for run in $(seq 1 "$k"); do
  (cd "$build" && ctest -j"$jobs" "${select[@]}" "${exclude[@]}" --timeout 900 >"$log" 2>&1) || true
  p=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' "$log" || true)
  f_list=$(sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (\(Failed\|Timeout\|SEGFAULT\|Subprocess aborted\|Exception\|Child aborted\).*/\1/p' "$log")
  f=0
  for t in $f_list; do
    failed[$t]=$(( ${failed[$t]:-0} + 1 ))
    f=$((f + 1))
  done
  passes=$((passes + p)) fails=$((fails + f))
  names=$(printf '%s' "$f_list" | tr '\n' ' ')
  if [ "$f" -gt 0 ]; then # keep the failed run's full output: a flake must be diagnosable
    mkdir -p "$build/flake-logs"
    cp "$build/Testing/Temporary/LastTest.log" "$build/flake-logs/run$run.log" 2>/dev/null || true
  fi
  echo "run $run/$k: $p passed, $f failed${names:+ (${names% })}${names:+; log: $build/flake-logs/run$run.log}"
done
echo "tests that failed at least once in $k runs of ${labels[*]:+labels ${labels[*]}}${labels[*]:+${by_name[*]:+ and }}${by_name[*]:+tests ${by_name[1]}}:"
if [ "${#failed[@]}" -eq 0 ]; then
  echo "  none"
else
  for t in "${!failed[@]}"; do echo "  $t  ${failed[$t]}/$k"; done | sort
fi
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
