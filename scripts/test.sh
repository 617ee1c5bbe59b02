#!/usr/bin/env bash
# Installs what is missing, builds spottrain twice (Release with warnings as
# errors, and ASan+UBSan) and runs the whole test suite in both builds, then the
# fuzz targets for a bounded number of inputs (a third, clang build).
#   scripts/test.sh            everything
#   SPOTTRAIN_TEST_FAST=1 ...  skip the sanitizer and fuzz passes
# The fuzz pass builds the libFuzzer targets with clang-14 (ASan+UBSan) and runs each for a
# bounded number of inputs (tests/fuzz/CMakeLists.txt); scripts/fuzz.sh runs them for longer.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
spottrain_install_deps
spottrain_install_deps "${SPOTTRAIN_TEST_PACKAGES[@]}"

jobs=$(nproc)
echo "== Release build (warnings are errors)"
cmake -S . -B build-ci -DCMAKE_BUILD_TYPE=Release -DSPOTTRAIN_WERROR=ON >/dev/null
cmake --build build-ci -j"$jobs"
echo "== tests (Release)"
(cd build-ci && ctest --output-on-failure -j"$jobs" --timeout 900)

if [ "${SPOTTRAIN_TEST_FAST:-0}" != 1 ]; then
  echo "== ASan+UBSan build"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPOTTRAIN_WERROR=ON -DSPOTTRAIN_SANITIZE=ON \
    -DSPOTTRAIN_CUDA=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  echo "== tests (ASan+UBSan; the long learning test and the SLURM tests run in the Release pass only)"
  # (tests under mpirun turn leak detection off: Open MPI keeps its own allocations to exit)
  # The slurm label tests the batch script and SLURM's signal and requeue paths (~2 min,
  # mostly SLURM's own requeue delays); the worker code they run is the same that
  # it_sigterm and it_resume run under the sanitizers, so a second pass adds time only.
  export ASAN_OPTIONS=halt_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd build-asan && ctest --output-on-failure -j"$jobs" --timeout 1800 -LE 'slow|slurm')
fi

if [ "${SPOTTRAIN_TEST_FAST:-0}" != 1 ]; then
  echo "== fuzz targets (clang-14, libFuzzer, ASan+UBSan): a bounded run of each"
  CC=clang-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPOTTRAIN_FUZZ=ON -DSPOTTRAIN_SANITIZE=ON \
    -DSPOTTRAIN_CUDA=OFF >/dev/null
  cmake --build build-fuzz -j"$jobs" --target fuzz_targets
  (cd build-fuzz && ctest --output-on-failure -j"$jobs" -L fuzz)
fi
