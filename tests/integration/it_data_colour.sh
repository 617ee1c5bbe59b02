#!/usr/bin/env bash
# Colour data end to end (issue 15): a data set whose label is only visible in
# colour (make_colour_data.py: the order of the channels), written as CIFAR-10
# binaries, as an NHWC HDF5 set and as a chunked, compressed NCHW HDF5 set.
#  - training on the CIFAR files reaches near-perfect test accuracy;
#  - training on the NHWC HDF5 set gives the very same parameters, bit for bit,
#    and the model evaluates identically on all three formats: a reader that
#    placed a channel, a row or a label differently would break one of these;
#  - the control, the same images made grey, does not learn (so the task
#    really needs the channels kept apart);
#  - a data set of another shape than model.input, or of another format than
#    data.format says, is refused with its own exit code, naming file and shapes.
. "$(dirname "$0")/common.sh"
cfg="$TESTS_DIR/integration/colour.ini"
"$PYTHON" "$TESTS_DIR/integration/make_colour_data.py" "$WORK/data"
train() { # name data-subdir
  run_mpi 1 "$SPOTTRAIN" train --config "$cfg" --data-dir "$WORK/data/$2" --run-dir "$WORK/$1" --threads 2 \
    --set train.eval_each_epoch=true >"$WORK/$1.out" 2>"$WORK/$1.err" || { cat "$WORK/$1.err"; fail "training $1 failed"; }
}
acc_at_least() { "$PYTHON" -c "import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)" "$1" "$2"; }

train cifar cifar
acc=$(last_json "$WORK/cifar.out" test_accuracy)
acc_at_least "$acc" 0.95 || fail "colour set from CIFAR files: test accuracy $acc < 0.95"
train h5 h5nhwc
"$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/cifar/final.h5" "$WORK/h5/final.h5" --bitwise --optim \
  || fail "training on the HDF5 set is not bit-identical to training on the CIFAR files"
for d in cifar h5nhwc h5nchw; do
  "$SPOTTRAIN" eval --ckpt "$WORK/cifar/final.h5" --data-dir "$WORK/data/$d" >"$WORK/eval-$d.out" 2>"$WORK/eval-$d.err" \
    || { cat "$WORK/eval-$d.err"; fail "eval on $d failed"; }
  tail -n 1 "$WORK/eval-$d.out" | "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print(d['test_accuracy'], d['loss'])" \
    >"$WORK/eval-$d.txt"
done
cmp -s "$WORK/eval-cifar.txt" "$WORK/eval-h5nhwc.txt" && cmp -s "$WORK/eval-cifar.txt" "$WORK/eval-h5nchw.txt" \
  || { cat "$WORK"/eval-*.txt; fail "the same test images in three formats evaluate differently"; }

# eval's JSON: top-5 and per-class accuracy, consistent with top-1 and the class counts
"$PYTHON" - "$WORK/eval-cifar.out" "$WORK/data" <<'PY' || fail "eval's top-5 / per-class figures are wrong"
import json, sys, h5py
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
labels = h5py.File(sys.argv[2] + "/h5nhwc/set.h5", "r")["test/labels"][()]
pc = d["per_class"]
assert len(pc) == 6 and [c["class"] for c in pc] == list(range(6)), pc
assert [c["images"] for c in pc] == [int((labels == k).sum()) for k in range(6)], pc
right = sum(c["accuracy"] * c["images"] for c in pc)
assert abs(right / d["images"] - d["test_accuracy"]) < 1e-9, d
assert d["top5_accuracy"] >= d["test_accuracy"] and min(c["accuracy"] for c in pc) >= 0.9, d
PY

train grey grey
acc=$(last_json "$WORK/grey.out" test_accuracy)
acc_at_least 0.5 "$acc" || fail "the grey control learned ($acc): the test does not need colour"
"$SPOTTRAIN" eval --ckpt "$WORK/grey/final.h5" --data-dir "$WORK/data/grey" >"$WORK/eval-grey.out" 2>/dev/null
top5=$(last_json "$WORK/eval-grey.out" top5_accuracy)
acc_at_least 0.99 "$top5" || fail "top-5 of the grey control is $top5: 6 classes cannot all be in a top 5"

expect_exit 65 "$SPOTTRAIN" train --config "$cfg" --data-dir "$DATA" --run-dir "$WORK/mnist" --max-steps 1
expect_err "1x28x28.*3x32x32"
expect_exit 66 "$SPOTTRAIN" train --config "$cfg" --data-dir "$WORK/data/cifar" --run-dir "$WORK/c100" \
  --set data.format=cifar100
expect_err "train.bin"
[ ! -e "$WORK/mnist/final.h5" ] || fail "a refused run left a model behind"
echo "it_data_colour: all checks passed"
