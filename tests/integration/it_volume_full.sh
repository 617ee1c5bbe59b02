#!/usr/bin/env bash
# A full volume: the checkpoint write fails with a clear message, every rank
# exits 74, and the checkpoints already on the volume are untouched.
# Needs root to mount a small tmpfs (skipped with 77 otherwise).
. "$(dirname "$0")/common.sh"
vol="$WORK/vol"
mkdir -p "$vol"
mount -t tmpfs -o size=600k tmpfs "$vol" 2>/dev/null || { echo "cannot mount a tmpfs here: skipped"; exit 77; }
trap 'umount "$vol" 2>/dev/null; cleanup' EXIT
common=(train --config "$CONFIGS/tiny.ini" --data-dir "$DATA" --threads 1 --run-dir "$vol/run"
        --set train.eval_each_epoch=false --set checkpoint.every_steps=10 --set checkpoint.keep=50
        --set checkpoint.keep_epoch_ends=false)
# ~45 KB per checkpoint of tiny with Adam: the first few fit, then the volume is full
rc=0
run_mpi 2 "$SPOTTRAIN" "${common[@]}" --max-steps 400 >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" = 74 ] || { cat "$WORK/err"; fail "exit $rc, expected 74"; }
grep -Eq "No space left on device|ENOSPC" "$WORK/err" || { cat "$WORK/err"; fail "the message does not say the volume is full"; }
ls "$vol/run/checkpoints" | grep -q '\.tmp$' && fail "a .tmp file was left behind"
n=0
for f in "$vol"/run/checkpoints/ckpt-*.h5; do
  "$SPOTTRAIN" inspect "$f" >/dev/null || fail "$f does not validate"
  n=$((n + 1))
done
[ "$n" -ge 1 ] || fail "no checkpoint survived"
"$PYTHON" - "$vol/run/events.jsonl" <<'PY' || fail "exit events"
import json, sys
ex = [json.loads(l) for l in open(sys.argv[1]) if '"exit"' in l]
assert len(ex) == 2 and {e["code"] for e in ex} == {74}, ex
PY
echo "it_volume_full: $n earlier checkpoints intact, all ranks exited 74"
