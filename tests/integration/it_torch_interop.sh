#!/usr/bin/env bash
# Issue 14: a spottrain checkpoint of configs/resnet20.ini loads unchanged into a
# torchvision-style ResNet (load_state_dict(strict=True): every name, shape and layout as
# PyTorch's), and `spottrain eval` and PyTorch in eval mode agree on the test accuracy and
# loss, here on the first 1000 test images after 10 training steps.
# PyTorch: Debian's python3-torch (/usr/bin/python3), or TORCH_PYTHON; skipped (77) without.
. "$(dirname "$0")/common.sh"
torch_py=/usr/bin/python3
"$torch_py" -c "import torch" 2>/dev/null || torch_py=${TORCH_PYTHON:-}
[ -n "$torch_py" ] && "$torch_py" -c "import torch, numpy" 2>/dev/null || { echo "skip: no PyTorch"; exit 77; }
interop="$TESTS_DIR/integration/torch_interop.py"

mkdir -p "$WORK/data"
ln -s "$DATA"/train-* "$WORK/data/"
"$PYTHON" - "$DATA" "$WORK/data" 1000 <<'PY'
import gzip, os, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name, head, per in (("t10k-images-idx3-ubyte", 16, 28 * 28), ("t10k-labels-idx1-ubyte", 8, 1)):
    b = gzip.open(os.path.join(src, name + ".gz")).read()
    out = bytearray(b[:head + n * per])
    out[4:8] = n.to_bytes(4, "big")
    open(os.path.join(dst, name), "wb").write(out)
PY
run_mpi 1 "$SPOTTRAIN" train --config "$CONFIGS/resnet20.ini" --data-dir "$WORK/data" --run-dir "$WORK/run" \
  --threads 2 --max-steps 10 --set train.global_batch=32 --set train.lr=0.01 --set train.schedule=constant --set train.warmup_steps=0 \
  --set train.eval_each_epoch=false --set checkpoint.every_steps=0 >"$WORK/train.out" 2>"$WORK/train.err" \
  || { cat "$WORK/train.err"; fail "training failed"; }
expect_exit 0 "$SPOTTRAIN" eval --ckpt "$WORK/run/final.h5" --data-dir "$WORK/data" --threads 2
cp "$WORK/last.out" "$WORK/spottrain.json"
"$PYTHON" "$interop" export "$WORK/run/final.h5" "$WORK/weights.npz" || fail "export failed"
"$torch_py" "$interop" eval "$WORK/weights.npz" "$WORK/data" resnet20 1x28x28 >"$WORK/torch.json" \
  || fail "PyTorch could not load or run the checkpoint"
"$PYTHON" - "$WORK/spottrain.json" "$WORK/torch.json" <<'PY' || fail "spottrain eval and PyTorch disagree"
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
t = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
print("spottrain", s["test_accuracy"], s["loss"], "pytorch", t["test_accuracy"], t["test_loss"])
assert t["images"] == 1000
assert abs(s["test_accuracy"] - t["test_accuracy"]) <= 2 / 1000, "accuracy"  # a near-tie may flip
assert abs(s["loss"] - t["test_loss"]) <= 1e-4 * t["test_loss"], "loss"
PY
echo "it_torch_interop: all checks passed"
