#!/usr/bin/env bash
# Learning: 1 epoch of configs/mnist_cnn.ini on Fashion-MNIST with 2 ranks
# (the README's default job, shortened) reaches at least 85% test accuracy.
. "$(dirname "$0")/common.sh"
run_mpi 2 "$SPOTTRAIN" train --config "$CONFIGS/mnist_cnn.ini" --data-dir "$FASHION_DIR" \
  --epochs 1 --threads 1 --run-dir "$WORK/run" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err"; fail "training failed"; }
tail -n 3 "$WORK/err"
acc=$(last_json "$WORK/out" test_accuracy)
echo "test accuracy after 1 epoch: $acc"
"$PYTHON" -c "import sys; sys.exit(0 if float('$acc') >= 0.85 else 1)" || fail "accuracy $acc < 0.85"
[ -s "$WORK/run/metrics.jsonl" ] || fail "no metrics.jsonl"
grep -q '"test_accuracy"' "$WORK/run/metrics.jsonl" || fail "no epoch line in metrics.jsonl"
[ -s "$WORK/run/final.h5" ] || fail "no final.h5"
echo "it_learning: all checks passed"
