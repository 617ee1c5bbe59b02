#!/usr/bin/env bash
# BatchNorm on a world of any size (issue 14): configs/tiny_bn.ini (conv, batchnorm, relu,
# maxpool, dense) for 30 steps with W = 1, 2, 3 gives bit-identical parameters, optimizer
# state and running statistics (each shard normalises with its own statistics; the running
# ones are summed exactly in the gradient all-reduce); a run stopped at W = 2 and resumed at
# W = 3 ends bit-identical to the straight one; the running statistics moved and are what
# eval uses.
. "$(dirname "$0")/common.sh"
common=(train --config "$CONFIGS/tiny_bn.ini" --data-dir "$DATA" --set train.eval_each_epoch=false
        --set checkpoint.every_steps=15)
run() { # name ranks threads max-steps [args]
  local name=$1 np=$2 threads=$3 steps=$4; shift 4
  run_mpi "$np" "$SPOTTRAIN" "${common[@]}" "$@" --threads "$threads" --max-steps "$steps" --run-dir "$WORK/$name" \
    >>"$WORK/$name.out" 2>>"$WORK/$name.err" || { cat "$WORK/$name.err"; fail "run $name (W=$np) failed"; }
}
cmp_params() { "$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/$1/final.h5" "$WORK/$2/final.h5" "${@:3}"; }
run w1 1 2 30
run w2 2 1 30
run w3 3 1 30
[ "$(last_json "$WORK/w1.out" steps)" = 30 ] || fail "W=1 did not run 30 steps"
cmp_params w1 w2 --bitwise --optim || fail "BatchNorm: W=1 vs W=2 not bit-identical"
cmp_params w1 w3 --bitwise --optim || fail "BatchNorm: W=1 vs W=3 not bit-identical"

run elastic 2 1 15
[ "$(last_json "$WORK/elastic.out" steps)" = 15 ] || fail "first part did not stop at 15"
run elastic 3 1 30
grep -q "written by a world of 2" "$WORK/elastic.err" || fail "W=3 did not resume the W=2 checkpoint"
cmp_params w1 elastic --bitwise --optim || fail "BatchNorm: W=2 -> W=3 not bit-identical"

# the ResNet recipe (SGD Nesterov, weight decay skipping BatchNorm and biases, one-cycle, label
# smoothing) keeps the rule too
recipe=(--set train.optimizer=sgd --set train.lr=0.05 --set train.momentum=0.9 --set train.nesterov=true
        --set train.weight_decay=5e-4 --set train.wd_skip=bn,bias --set train.schedule=onecycle
        --set layer.loss.label_smoothing=0.1 --set layer.conv1.padding=1 --set checkpoint.every_steps=0)
run r1 1 2 20 "${recipe[@]}"
run r3 3 1 20 "${recipe[@]}"
cmp_params r1 r3 --bitwise --optim || fail "recipe: W=1 vs W=3 not bit-identical"
"$PYTHON" - "$WORK/r1/metrics.jsonl" "$WORK/r1/final.h5" <<'PY' || fail "the recipe keys did nothing"
import json, sys, h5py
lrs = [json.loads(l)["lr"] for l in open(sys.argv[1]) if '"lr"' in l]
assert len(set(lrs)) >= 2, lrs  # one-cycle moves the rate
with h5py.File(sys.argv[2], "r") as f:
    assert "momentum_buffer" in f["optim"], list(f["optim"])
    assert f["params"]["conv1.weight"].shape == (8, 1, 3, 3) and "fc1.weight" in f["params"]
    assert f["params"]["fc1.weight"].shape == (10, 8 * 7 * 7), f["params"]["fc1.weight"].shape  # padding = 1
PY

# the running statistics are in the checkpoint under PyTorch's names, and they moved
"$PYTHON" - "$WORK/w1/final.h5" <<'PY' || fail "running statistics missing or unchanged"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    b = f["buffers"]
    assert sorted(b) == ["bn1.num_batches_tracked", "bn1.running_mean", "bn1.running_var"], sorted(b)
    assert b["bn1.num_batches_tracked"][()].tolist() == [30.0], b["bn1.num_batches_tracked"][()]
    assert b["bn1.running_mean"].shape == (8,) and np.any(b["bn1.running_mean"][()] != 0)
    assert np.all(b["bn1.running_var"][()] > 0) and np.any(b["bn1.running_var"][()] != 1)
PY
expect_exit 0 "$SPOTTRAIN" inspect "$WORK/w1/final.h5"
grep -q "bn1.running_var" "$WORK/last.out" || fail "inspect does not list bn1.running_var"
expect_exit 0 "$SPOTTRAIN" eval --ckpt "$WORK/w1/final.h5" --data-dir "$DATA" --threads 2
acc=$(last_json "$WORK/last.out" test_accuracy)
"$PYTHON" -c "import sys; sys.exit(0 if float('$acc') > 0.5 else 1)" || fail "eval accuracy $acc with running statistics"
echo "it_batchnorm: all checks passed"
