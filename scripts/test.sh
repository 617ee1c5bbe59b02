#!/usr/bin/env bash
# Installs what is missing, builds spottrain twice (Release with warnings as
# errors, and ASan+UBSan) and runs the whole test suite in both builds.
#   scripts/test.sh            everything
#   SPOTTRAIN_TEST_FAST=1 ...  skip the sanitizer pass
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
