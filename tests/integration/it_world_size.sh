#!/usr/bin/env bash
# Invariant 1: the same 30 training steps of mnist_cnn with W = 1, 2 and 3
# ranks give parameters equal within 1e-5 relative (only the float summation
# order differs), and W = 2 run twice gives bit-identical parameters.
. "$(dirname "$0")/common.sh"
cfg="$CONFIGS/mnist_cnn.ini"
common=(train --config "$cfg" --data-dir "$DATA" --max-steps 30 --threads 1
        --set train.eval_each_epoch=false --set checkpoint.every_steps=0)
for w in 1 2 3; do
  run_mpi "$w" "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/w$w" >"$WORK/w$w.out" 2>"$WORK/w$w.err" \
    || { cat "$WORK/w$w.err"; fail "W=$w run failed"; }
  [ "$(last_json "$WORK/w$w.out" steps)" = 30 ] || fail "W=$w did not run 30 steps"
  [ "$(last_json "$WORK/w$w.out" world_size)" = "$w" ] || fail "W=$w world size"
done
run_mpi 2 "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/w2b" >"$WORK/w2b.out" 2>"$WORK/w2b.err" \
  || { cat "$WORK/w2b.err"; fail "second W=2 run failed"; }
"$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/w1/final.h5" "$WORK/w2/final.h5" --rtol 1e-5 \
  || fail "W=1 vs W=2"
"$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/w1/final.h5" "$WORK/w3/final.h5" --rtol 1e-5 \
  || fail "W=1 vs W=3"
"$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/w2/final.h5" "$WORK/w2b/final.h5" --bitwise --optim \
  || fail "W=2 twice is not bit-identical"
# the parameters did move: a run of 0 steps would pass the comparisons above
"$PYTHON" - "$WORK/w1/final.h5" <<'PY' || fail "loss did not fall"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1].replace("final.h5", "metrics.jsonl"))]
losses = [l["loss"] for l in lines if "loss" in l]
assert losses[-1] < losses[0] * 0.9, losses
PY
echo "it_world_size: all checks passed"
