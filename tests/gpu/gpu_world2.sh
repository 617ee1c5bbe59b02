#!/usr/bin/env bash
# Two ranks training on GPUs under mpirun (configs/tiny.ini, 30 steps):
#   - dist.backend = auto: with two or more GPUs the gradients go through NCCL;
#     with one GPU both ranks share it, NCCL refuses that (duplicate GPU) and the
#     all-reduce falls back to host staging + MPI, with a warning;
#   - dist.backend = mpi: host staging + MPI whatever the GPU count;
#   - both end with parameters within GPU_WORLD_RTOL (default 1e-3) of one rank
#     on one GPU (invariant 1: only the float summation order differs).
# Skipped (exit 77) without a GPU or without mpirun. Environment from CTest:
#   SPOTTRAIN, GPU_PROBE (test_gpu_ops), CONFIGS, TESTS_DIR, MNIST_DIR, FASHION_DIR
set -euo pipefail
: "${SPOTTRAIN:?}" "${GPU_PROBE:?}" "${CONFIGS:?}" "${TESTS_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

gpus=$("$GPU_PROBE" --count)
if [ "$gpus" = 0 ]; then
  echo "gpu_world2: SKIPPED: no usable CUDA GPU"
  exit 77
fi
if ! command -v mpirun >/dev/null; then
  echo "gpu_world2: SKIPPED: no mpirun"
  exit 77
fi

fail() { echo "FAIL: $*" >&2; exit 1; }
PY=""
for p in "${PYTHON:-}" python3 /usr/bin/python3; do
  if [ -n "$p" ] && env -u LD_LIBRARY_PATH "$p" -c "import h5py, numpy" 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || fail "no python3 with h5py and numpy to compare checkpoints"
py() { env -u LD_LIBRARY_PATH "$PY" "$@"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/spottrain-gpu2.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
DATA=""
for d in "${MNIST_DIR:-}" "${FASHION_DIR:-}" /usr/share/datasets/fashion-mnist; do
  if [ -n "$d" ] && [ -e "$d/train-images-idx3-ubyte.gz" ]; then DATA=$d; break; fi
done
if [ -z "$DATA" ]; then
  DATA="$WORK/data"
  mkdir -p "$DATA"
  py - "$DATA" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(6)
for split, n in (("train", 4096), ("t10k", 512)):
    y = rng.integers(0, 10, size=n).astype(np.uint8)
    x = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
    with open(f"{sys.argv[1]}/{split}-images-idx3-ubyte", "wb") as f:
        f.write(np.array([0x803, n, 28, 28], dtype=">u4").tobytes()); f.write(x.tobytes())
    with open(f"{sys.argv[1]}/{split}-labels-idx1-ubyte", "wb") as f:
        f.write(np.array([0x801, n], dtype=">u4").tobytes()); f.write(y.tobytes())
PY
fi

TOL=${GPU_WORLD_RTOL:-1e-3}
common=(train --config "$CONFIGS/tiny.ini" --data-dir "$DATA" --device cuda --max-steps 30
        --set train.eval_each_epoch=false --set checkpoint.every_steps=0 --set spot.provider=none)
mpi=(mpirun --oversubscribe --bind-to none --mca btl "self,vader,tcp" --mca btl_tcp_if_include lo
     --mca oob_tcp_if_include lo)

"$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/w1" >"$WORK/w1.out" 2>"$WORK/w1.err" \
  || { cat "$WORK/w1.err" >&2; fail "one rank on the GPU"; }
"${mpi[@]}" -np 2 "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/auto" >"$WORK/auto.out" 2>"$WORK/auto.err" \
  || { cat "$WORK/auto.err" >&2; fail "two ranks, dist.backend = auto"; }
"${mpi[@]}" -np 2 "$SPOTTRAIN" "${common[@]}" --set dist.backend=mpi --run-dir "$WORK/mpi" \
  >"$WORK/mpi.out" 2>"$WORK/mpi.err" || { cat "$WORK/mpi.err" >&2; fail "two ranks, dist.backend = mpi"; }

# auto: NCCL, or (one GPU shared by two ranks: NCCL refuses duplicate GPUs) the MPI fallback
if grep -q "gradient all-reduce on the GPUs" "$WORK/auto.err"; then
  how="NCCL"
elif [ "$gpus" -lt 2 ] && grep -q "NCCL could not start" "$WORK/auto.err"; then
  how="host staging + MPI after NCCL refused the shared GPU"
else
  cat "$WORK/auto.err" >&2
  fail "dist.backend = auto on $gpus GPU(s): neither NCCL nor its fallback was reported"
fi
grep -q "copied to host memory for MPI_Allreduce" "$WORK/mpi.err" || { cat "$WORK/mpi.err" >&2; fail "dist.backend = mpi: no host staging reported"; }
for r in auto mpi; do
  py "$TESTS_DIR/integration/compare_params.py" "$WORK/w1/final.h5" "$WORK/$r/final.h5" --rtol "$TOL" \
    || fail "one rank vs two ranks ($r): parameters differ by more than $TOL"
done
echo "gpu_world2: all checks passed ($gpus GPU(s), auto: $how, rtol $TOL)"
