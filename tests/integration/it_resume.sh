#!/usr/bin/env bash
# Checkpoints resume exactly (issue: checkpoints).
#  - 120 steps straight vs. 50 steps, stop, resume for 70 (W = 2, Adam): bit-identical
#    parameters and optimizer state;
#  - stop at W = 2, resume at W = 3: within 1e-5 relative (bit-identical, thanks to the
#    exact gradient sums);
#  - periodic asynchronous checkpoints and retention (keep 2 + epoch ends);
#  - spottrain inspect validates, spottrain eval reports the accuracy;
#  - --init-from takes the weights only.
# (mnist_cnn.ini sets lr = 1.0 for Adadelta, and keys the user set win over the optimizer's
#  defaults: Adam needs its lr given too)
# (mnist_cnn with conv2 narrowed to 16 filters: every layer kind, a quarter of the work)
. "$(dirname "$0")/common.sh"
common=(train --config "$CONFIGS/mnist_cnn.ini" --data-dir "$DATA" --threads 1
        --set train.optimizer=adam --set train.lr=0.001 --set train.eval_each_epoch=false --set layer.conv2.filters=16
        --set checkpoint.every_steps=20 --set checkpoint.keep=2)
train() { # run-dir ranks max-steps [args]
  local dir=$1 np=$2 steps=$3; shift 3
  run_mpi "$np" "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/$dir" --max-steps "$steps" "$@" \
    >>"$WORK/$dir.out" 2>>"$WORK/$dir.err" || { cat "$WORK/$dir.err"; fail "$dir: training failed"; }
}
cmp_params() { "$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/$1/final.h5" "$WORK/$2/final.h5" "${@:3}"; }

train straight 2 120
train split 2 50
[ "$(last_json "$WORK/split.out" steps)" = 50 ] || fail "first part did not stop at 50"
train split 2 120
grep -q '"event":"resume"' "$WORK/split/events.jsonl" || fail "no resume event"
grep -q "resuming from .*ckpt-00000050.h5: step 50" "$WORK/split.err" || fail "did not resume from step 50"
cmp_params straight split --bitwise --optim || fail "50 + 70 is not bit-identical to 120"

train elastic 2 50
train elastic 3 120
grep -q "written by a world of 2" "$WORK/elastic.err" || fail "W=3 did not resume the W=2 checkpoint"
cmp_params straight elastic --rtol 1e-5 || fail "W=2 -> W=3 beyond 1e-5"
cmp_params straight elastic --bitwise --optim || fail "W=2 -> W=3 not bit-identical"

# retention: the newest 2 periodic checkpoints plus the step-120 one; *.tmp never left behind
ls "$WORK/straight/checkpoints" >"$WORK/ls"
[ "$(grep -c '\.h5$' "$WORK/ls")" -le 3 ] || { cat "$WORK/ls"; fail "retention kept too many"; }
grep -q "ckpt-00000120.h5" "$WORK/ls" || fail "no final-step checkpoint"
! grep -q '\.tmp' "$WORK/ls" || fail "a .tmp file was left behind"
grep -q '"event":"checkpoint"' "$WORK/straight/events.jsonl" || fail "no checkpoint events"

# the user tools
expect_exit 0 "$SPOTTRAIN" inspect "$WORK/straight/final.h5"
grep -q "conv1.weight" "$WORK/last.out" || fail "inspect lists no conv1.weight"
grep -Eq "valid: yes" "$WORK/last.out" || fail "inspect did not validate"
expect_exit 0 "$SPOTTRAIN" eval --ckpt "$WORK/straight/final.h5" --data-dir "$DATA" --threads 2
acc=$(last_json "$WORK/last.out" test_accuracy)
"$PYTHON" -c "import sys; sys.exit(0 if float('$acc') > 0.5 else 1)" || fail "eval accuracy $acc"

# --init-from: weights only; a new run starts at step 0 from those weights
train finetune 1 5 --init-from "$WORK/straight/final.h5"
grep -q "initialised the weights from" "$WORK/finetune.err" || fail "--init-from not reported"
[ "$(last_json "$WORK/finetune.out" steps)" = 5 ] || fail "fine-tuning run did not start at step 0"
echo "it_resume: all checks passed"
