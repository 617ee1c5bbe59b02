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
exec mpirun -np 2 --bind-to none build/src/spottrain train \
  --config configs/mnist_cnn.ini --run-dir volume/mnist_cnn --threads 1 "$@"
