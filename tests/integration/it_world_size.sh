#!/usr/bin/env bash
# Invariant 1: the same 30 training steps of mnist_cnn (conv2 narrowed to 16
# filters to keep the sanitizer pass short) with W = 1, 2 and 3
# ranks (and 2 or 1 threads per rank) give the same parameters. The issue asks
# for 1e-5 relative; spottrain's exact sharded gradient sums (src/grad.h) make
# them bit-identical, parameters and optimizer state, and that is what is
# checked. W = 2 run twice is bit-identical as well.
. "$(dirname "$0")/common.sh"
cfg="$CONFIGS/mnist_cnn.ini"
common=(train --config "$cfg" --data-dir "$DATA" --max-steps 30 --set layer.conv2.filters=16
        --set train.eval_each_epoch=false --set checkpoint.every_steps=0)
run() { # name ranks threads
  run_mpi "$2" "$SPOTTRAIN" "${common[@]}" --threads "$3" --run-dir "$WORK/$1" >"$WORK/$1.out" 2>"$WORK/$1.err" \
    || { cat "$WORK/$1.err"; fail "run $1 (W=$2) failed"; }
  [ "$(last_json "$WORK/$1.out" steps)" = 30 ] || fail "run $1 did not run 30 steps"
  [ "$(last_json "$WORK/$1.out" world_size)" = "$2" ] || fail "run $1: world size"
}
run w1 1 2
run w2 2 1
run w3 3 1
run w2b 2 1
cmp_params() { "$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/$1/final.h5" "$WORK/$2/final.h5" "${@:3}"; }
cmp_params w1 w2 --rtol 1e-5 || fail "W=1 vs W=2 beyond 1e-5"
cmp_params w1 w3 --rtol 1e-5 || fail "W=1 vs W=3 beyond 1e-5"
cmp_params w1 w2 --bitwise --optim || fail "W=1 vs W=2 not bit-identical"
cmp_params w1 w3 --bitwise --optim || fail "W=1 vs W=3 not bit-identical"
cmp_params w2 w2b --bitwise --optim || fail "W=2 twice is not bit-identical"
# the parameters did move, and the loss fell: a run of 0 steps would pass the comparisons above
"$PYTHON" - "$WORK/w1/metrics.jsonl" <<'PY' || fail "loss did not fall"
import json, sys
losses = [json.loads(l)["loss"] for l in open(sys.argv[1]) if '"loss"' in l]
assert len(losses) >= 3 and losses[-1] < losses[0] * 0.9, losses
PY
echo "it_world_size: all checks passed"
