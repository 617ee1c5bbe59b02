#!/usr/bin/env bash
# Issue 18: a checkpoint whose seal is valid but whose HDF5 global heap is damaged (a
# variable-length string attribute, as format 1 wrote them, over a broken heap object) crashed
# every reader. Now each refuses it without HDF5 reading the heap:
#  - spottrain inspect and eval --ckpt: exit 65 naming the attribute;
#  - train --init-from: exit 65;
#  - resume, with such a file as the newest checkpoint: skipped with a warning, the run goes on
#    from the checkpoint before it;
#  - a run of checkpoint format 1 is refused rather than started again from step 0, and
#    scripts/ckpt_upgrade.py converts it.
# A crash would show as an exit code above 128 (or ASan's report).
. "$(dirname "$0")/common.sh"
ckpt_run_20
"$PYTHON" "$TESTS_DIR/integration/ckpt_heap_damage.py" "$newest" || fail "could not make the damaged checkpoint"

expect_exit 65 "$SPOTTRAIN" inspect "$newest"
grep -q "variable-length string" "$WORK/last.out" "$WORK/last.err" || fail "inspect does not say why"
# eval, --init-from: 65; resume: the damaged newest file is skipped, the run continues from step 10
refused_then_resumed "attribute config of / is a variable-length string" "variable-length string" \
  "skipping .*ckpt-00000020.h5: .*variable-length string"

# a run of format 1 (an older build): resume refuses to start it again from step 0 (exit 65);
# scripts/ckpt_upgrade.py converts its checkpoints, and the run goes on from the newest
for f in "$WORK"/run/checkpoints/*.h5; do
  "$PYTHON" "$TESTS_DIR/integration/ckpt_heap_damage.py" --format1 "$f" || fail "could not make $f format 1"
done
expect_exit 65 "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/run" --max-steps 40
expect_err "holds checkpoints of format 1 .*scripts/ckpt_upgrade.py"
"$PYTHON" "$TESTS_DIR/../scripts/ckpt_upgrade.py" "$WORK"/run/checkpoints/*.h5 >"$WORK/upgrade.out" ||
  { cat "$WORK/upgrade.out"; fail "ckpt_upgrade.py failed"; }
expect_exit 0 "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/run" --max-steps 40
expect_err "resuming from .*ckpt-00000030.h5: step 30"
echo "ok"
