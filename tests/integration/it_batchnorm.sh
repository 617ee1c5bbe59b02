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
run() { # name ranks threads max-steps
  run_mpi "$2" "$SPOTTRAIN" "${common[@]}" --threads "$3" --max-steps "$4" --run-dir "$WORK/$1" \
    >>"$WORK/$1.out" 2>>"$WORK/$1.err" || { cat "$WORK/$1.err"; fail "run $1 (W=$2) failed"; }
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
