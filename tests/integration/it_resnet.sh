#!/usr/bin/env bash
# Invariant 1 on a graph: configs/resnet20.ini (residual adds, projection shortcuts, outputs
# read by two layers, repeated blocks, BatchNorm) trains the same bits with W = 1, 2 and 3 ranks, and a
# run stopped at W = 2 and resumed at W = 3 ends with the same bits as the straight run
# (parameters and optimizer state). 4 steps of 32 samples keep it short.
# BatchNorm's statistics are the 16-sample shards' (grad.h), its running statistics
# summed exactly: /buffers are compared bit for bit too (compare_params.py).
. "$(dirname "$0")/common.sh"
common=(train --config "$CONFIGS/resnet20.ini" --data-dir "$DATA" --threads 1
        --set train.global_batch=32 --set train.lr=0.01 --set train.schedule=constant --set train.warmup_steps=0 --set train.eval_each_epoch=false
        --set checkpoint.every_steps=0 --set run.log_every=2)
train() { # run-dir ranks max-steps
  run_mpi "$2" "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/$1" --max-steps "$3" \
    >>"$WORK/$1.out" 2>>"$WORK/$1.err" || { cat "$WORK/$1.err"; fail "$1 (W=$2) failed"; }
  [ "$(last_json "$WORK/$1.out" steps)" = "$3" ] || fail "$1 did not run to step $3"
}
cmp_params() { "$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/$1/final.h5" "$WORK/$2/final.h5" "${@:3}"; }

train w1 1 4
train w2 2 4
train w3 3 4
cmp_params w1 w2 --bitwise --optim || fail "resnet20: W=1 vs W=2 not bit-identical"
cmp_params w1 w3 --bitwise --optim || fail "resnet20: W=1 vs W=3 not bit-identical"

train elastic 2 2
train elastic 3 4
grep -q "written by a world of 2" "$WORK/elastic.err" || fail "W=3 did not resume the W=2 checkpoint"
cmp_params w1 elastic --bitwise --optim || fail "resnet20: W=2 -> W=3 not bit-identical"

# the network is the graph it should be, and training moved the parameters
expect_exit 0 "$SPOTTRAIN" inspect "$WORK/w1/final.h5"
for t in layer2.0.downsample.0.weight layer3.2.conv2.weight fc.weight; do
  grep -q "$t" "$WORK/last.out" || fail "inspect lists no $t"
done
"$PYTHON" - "$WORK/w1/metrics.jsonl" <<'PY' || fail "no finite loss"
import json, math, sys
losses = [json.loads(l)["loss"] for l in open(sys.argv[1]) if '"loss"' in l]
assert losses and all(math.isfinite(x) for x in losses), losses
PY
echo "it_resnet: all checks passed"
