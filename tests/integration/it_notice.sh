#!/usr/bin/env bash
# Interruption notices (issue: notices). For each provider, with mpirun -np 3 and
# the mock metadata service: a notice at a random step stops all ranks at the
# same step with exit 75 and a durable checkpoint; `spottrain train` started
# again finishes with parameters bit-identical to an uninterrupted run. Also:
# a service that answers garbage or hangs never stops training by itself.
. "$(dirname "$0")/common.sh"
[ -x "${MOCK_IMDS:-}" ] || { echo "MOCK_IMDS not built"; exit 1; }
STEPS=150
# tiny.ini runs thousands of steps a second; 5 ms per step keeps every notice (at most
# step 110, seen within ~60 ms) well inside the 150 steps whatever the machine's load
common=(train --config "$CONFIGS/tiny.ini" --data-dir "$DATA" --threads 1 --max-steps "$STEPS"
        --set train.eval_each_epoch=false --set checkpoint.every_steps=40 --set run.min_step_ms=5)

# the uninterrupted reference
run_mpi 3 "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/ref" >"$WORK/ref.out" 2>"$WORK/ref.err" \
  || { cat "$WORK/ref.err"; fail "reference run failed"; }

MOCK_PID=
start_mock() { # run-dir
  mkdir -p "$1"
  "$MOCK_IMDS" --port 0 --port-file "$WORK/port" --step-file "$1/heartbeat" --vm-name testvm \
    >"$WORK/mock.out" 2>&1 &
  MOCK_PID=$!
  for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
  PORT=$(cat "$WORK/port")
}
stop_mock() { kill "$MOCK_PID" 2>/dev/null || true; wait "$MOCK_PID" 2>/dev/null || true; rm -f "$WORK/port"; }
ctl() { "$PYTHON" -c "import sys,urllib.request as u; print(u.urlopen(u.Request(sys.argv[1], method=sys.argv[2])).read().decode())" \
          "http://127.0.0.1:$PORT/_control/$1" "${2:-POST}"; }
trap 'stop_mock; cleanup' EXIT

seed=${NOTICE_SEED:-$RANDOM}
echo "notice steps drawn with seed $seed"
RANDOM=$seed
for provider in aws gcp azure; do
  dir="$WORK/$provider"
  start_mock "$dir"
  at=$((10 + RANDOM % 100))
  ctl "notice?provider=$provider&at_step=$at" >/dev/null
  rc=0
  run_mpi 3 "$SPOTTRAIN" "${common[@]}" --run-dir "$dir" --set spot.provider="$provider" \
    --set spot.metadata_url="http://127.0.0.1:$PORT" --set spot.poll_ms=50 --set spot.vm_name=testvm \
    >"$WORK/$provider.out" 2>"$WORK/$provider.err" || rc=$?
  [ "$rc" = 75 ] || { cat "$WORK/$provider.err"; fail "$provider: exit $rc, expected 75"; }
  "$PYTHON" - "$dir/events.jsonl" "$provider" "$at" <<'PY' || fail "$provider: events"
import json, sys, os
ev = [json.loads(l) for l in open(sys.argv[1])]
provider, at = sys.argv[2], int(sys.argv[3])
notice = [e for e in ev if e["event"] == "notice"]
stop = [e for e in ev if e["event"] == "stop"]
exits = [e for e in ev if e["event"] == "exit"]
assert len(notice) == 1 and notice[0]["provider"] == provider, notice
assert len(stop) == 1 and stop[0]["reason"] == "notice", stop
s = stop[0]["step"]
assert s >= at, (s, at)
assert len(exits) == 3 and {e["code"] for e in exits} == {75} and {e["step"] for e in exits} == {s}, exits
assert os.path.basename(stop[0]["path"]) == "ckpt-%08d.h5" % s and os.path.exists(stop[0]["path"]), stop
print(f"{provider}: notice at step >= {at}, all 3 ranks stopped at step {s}, "
      f"notice to durable checkpoint {stop[0]['notice_to_durable_s']:.3f} s")
PY
  path=$(ls "$dir"/checkpoints/ckpt-*.h5 | tail -n 1)
  "$SPOTTRAIN" inspect "$path" >/dev/null || fail "$provider: stop checkpoint does not validate"
  if [ "$provider" = azure ]; then
    ctl state GET | "$PYTHON" -c "import json,sys; s=json.load(sys.stdin); assert len(s['acks'])==1 and s['acks'][0]['known'], s['acks']" \
      || fail "azure: the event was not acknowledged with StartRequests"
  fi
  stop_mock
  # started again (no notice now): finishes, bit-identical to the uninterrupted run
  run_mpi 3 "$SPOTTRAIN" "${common[@]}" --run-dir "$dir" >>"$WORK/$provider.out" 2>>"$WORK/$provider.err" \
    || { cat "$WORK/$provider.err"; fail "$provider: resumed run failed"; }
  "$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/ref/final.h5" "$dir/final.h5" --bitwise --optim \
    || fail "$provider: resumed run differs from the uninterrupted run"
done

# a misbehaving service never stops training: garbage, oversized and slow answers
for mode in garbage huge "slow&delay_ms=3000" 500 redirect; do
  dir="$WORK/mode-${mode%%&*}"
  start_mock "$dir"
  ctl "mode?m=$mode" >/dev/null
  run_mpi 3 "$SPOTTRAIN" "${common[@]}" --max-steps 60 --run-dir "$dir" --set spot.provider=aws \
    --set spot.metadata_url="http://127.0.0.1:$PORT" --set spot.poll_ms=50 --set spot.timeout_ms=300 \
    >"$WORK/m.out" 2>"$WORK/m.err" || { cat "$WORK/m.err"; fail "mode $mode: training did not finish"; }
  ! grep -q '"event":"notice"' "$dir/events.jsonl" || fail "mode $mode: a false notice"
  stop_mock
done
echo "it_notice: all checks passed"
