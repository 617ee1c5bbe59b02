#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz for as long as one wants (issue 18).
#   scripts/fuzz.sh [-t SECONDS] [-j LANES] [TARGET...]
#     -t  seconds per target (default 600; 0 = until stopped)
#     -j  targets run side by side (default 1)
#     TARGET: config idx ckpt metadata cifar h5images hosts state events (default: all)
# Builds build-fuzz (clang-14, ASan+UBSan, -DSPOTTRAIN_FUZZ=ON) when missing. Each target's
# working corpus is fuzz-out/<name>/corpus (seeded from tests/fuzz/corpus/<name>, which is
# never written); crashes, leaks and timeouts land in fuzz-out/<name>/ as crash-*, leak-*,
# timeout-*; the log is fuzz-out/<name>/log and the last line of each log (executions,
# cov, ft) is printed at the end. A finding, once fixed, goes into tests/fuzz/corpus/<name>/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=600 lanes=1
while getopts "t:j:" o; do
  case $o in
    t) secs=$OPTARG ;;
    j) lanes=$OPTARG ;;
    *) sed -n 2,10p "$0"; exit 64 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config idx ckpt metadata cifar h5images hosts state events)

if [ ! -x build-fuzz/tests/fuzz/fuzz_config ]; then
  CC=${CC:-clang-14} cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPOTTRAIN_FUZZ=ON \
    -DSPOTTRAIN_SANITIZE=ON -DSPOTTRAIN_CUDA=OFF >/dev/null
fi
cmake --build build-fuzz -j"$(nproc)" --target fuzz_targets >/dev/null

# a small ASan quarantine: libFuzzer's leak checks scan it all (see tests/fuzz/fuzz_hdf5.h)
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:quarantine_size_mb=16} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp
run_one() {
  local t=$1 out=fuzz-out/$1
  mkdir -p "$out/corpus"
  cp -n tests/fuzz/corpus/"$t"/* "$out/corpus/" 2>/dev/null || true
  local limit=() asan=$ASAN_OPTIONS
  [ "$secs" -gt 0 ] && limit=(-max_total_time="$secs")
  # HDF5 mallocs sizes read from the damaged file and fails cleanly on NULL (tests/fuzz/CMakeLists.txt)
  case $t in ckpt | h5images) asan=$asan:allocator_may_return_null=1 ;; esac
  # a finding stops the run of this target (its input is in $out/); the other targets go on
  ASAN_OPTIONS=$asan build-fuzz/tests/fuzz/fuzz_"$t" "${limit[@]}" -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
    -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" >"$out/log" 2>&1 || true
}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$lanes" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true
for t in "${targets[@]}"; do
  f=fuzz-out/$t
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$f/log" | grep -o '[0-9]*$' || echo '?')
  last=$(grep -E '^#[0-9]+' "$f/log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
  found=$(find "$f" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \
    -o -name 'slow-unit-*' \) | wc -l)
  printf '%-9s executions %-10s %-20s findings %s\n' "$t" "$execs" "$last" "$found"
done
