#!/usr/bin/env bash
# The converter round trip (issue 15): a folder of PNGs in the ImageFolder
# layout -> scripts/imagefolder_to_h5.py -> spottrain reads the same pixels and
# labels. The expectation is built independently: the PNGs' pixels, decoded by
# Pillow, written as CIFAR-10 binaries in ImageFolder order. Training on the
# converted file (NCHW and NHWC) and on those binaries must give bit-identical
# parameters, and the test split must evaluate identically: one pixel, label
# or order different would change them.
. "$(dirname "$0")/common.sh"
"$PYTHON" - "$WORK" <<'PY'
import os, sys
import numpy as np
from PIL import Image
work = sys.argv[1]
rng = np.random.default_rng(11)
classes = ["blue", "green", "red"]            # sorted: labels 0, 1, 2
train, test = [], []
for label, name in enumerate(classes):
    os.makedirs(os.path.join(work, "tree", name))
    for i in range(4):
        a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        path = os.path.join(work, "tree", name, "img%d.png" % i)
        if i == 1:                             # one grey PNG: the converter makes it RGB
            Image.fromarray(a[:, :, 0], "L").save(path)
        else:
            Image.fromarray(a, "RGB").save(path)
        px = np.asarray(Image.open(path).convert("RGB"))
        (test if i == 3 else train).append((px, label))   # --test-fraction 0.25: the last of 4
os.makedirs(os.path.join(work, "cifar"))
def records(items):
    return b"".join(bytes([lab]) + px.transpose(2, 0, 1).tobytes() for px, lab in items)
parts = [train[0:2], train[2:4], train[4:6], train[6:8], train[8:9]]
for i, p in enumerate(parts):
    open(os.path.join(work, "cifar", "data_batch_%d.bin" % (i + 1)), "wb").write(records(p))
open(os.path.join(work, "cifar", "test_batch.bin"), "wb").write(records(test))
PY
conv="$TESTS_DIR/../scripts/imagefolder_to_h5.py"
mkdir -p "$WORK/nchw" "$WORK/nhwc"
"$PYTHON" "$conv" "$WORK/tree" "$WORK/nchw/set.h5" --size 32 --test-fraction 0.25 --layout NCHW >/dev/null \
  || fail "the converter failed (NCHW)"
"$PYTHON" "$conv" "$WORK/tree" "$WORK/nhwc/set.h5" --size 32x32 --test-fraction 0.25 >/dev/null \
  || fail "the converter failed (NHWC)"
"$PYTHON" - "$WORK/nchw/set.h5" <<'PY' || fail "the converted file's classes are wrong"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert [c.decode() for c in f["classes"][()]] == ["blue", "green", "red"], f["classes"][()]
assert f["train/images"].shape == (9, 3, 32, 32) and f["test/images"].shape == (3, 3, 32, 32)
PY
cfg="$TESTS_DIR/integration/colour.ini"
for d in cifar nchw nhwc; do
  "$SPOTTRAIN" train --config "$cfg" --data-dir "$WORK/$d" --run-dir "$WORK/run-$d" --threads 1 --max-steps 3 \
    --set train.global_batch=3 >"$WORK/$d.out" 2>"$WORK/$d.err" || { cat "$WORK/$d.err"; fail "training on $d failed"; }
  "$SPOTTRAIN" eval --ckpt "$WORK/run-cifar/final.h5" --data-dir "$WORK/$d" 2>/dev/null | tail -n 1 \
    | "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print(d['loss'], d['images'])" >"$WORK/eval-$d.txt"
done
for d in nchw nhwc; do
  "$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/run-cifar/final.h5" "$WORK/run-$d/final.h5" --bitwise --optim \
    || fail "training on the converted $d file differs from training on the PNGs' pixels"
  cmp -s "$WORK/eval-cifar.txt" "$WORK/eval-$d.txt" || fail "the converted $d test split evaluates differently"
done
[ "$(cut -d' ' -f2 "$WORK/eval-cifar.txt")" = 3 ] || fail "the test split does not hold 3 images"
echo "it_data_convert: all checks passed"
