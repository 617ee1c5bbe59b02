#!/usr/bin/env bash
# Installs what is missing, builds spottrain, and trains the Keras mnist_cnn
# network on Fashion-MNIST with 2 ranks, checkpointing under ./volume/.
# Extra arguments go to `spottrain train` (e.g. --epochs 1).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
spottrain_install_deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
mkdir -p volume
# Ctrl-C reaches mpirun, which passes SIGTERM to the ranks only after
# odls_base_sigkill_timeout and SIGKILL after twice that: 10 s leaves the ranks
# time to finish the step and write the checkpoint of their agreed stop.
exec mpirun -np 2 --bind-to none --mca odls_base_sigkill_timeout 10 build/src/spottrain train \
  --config configs/mnist_cnn.ini --run-dir volume/mnist_cnn --threads 1 "$@"
