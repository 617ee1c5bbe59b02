#!/usr/bin/env bash
# SIGTERM (SLURM, Kubernetes, systemd) ends training at one agreed step with a
# checkpoint, exit 75: (1) SIGTERM to one rank alone; (2) SIGTERM to mpirun,
# which forwards it to every rank and, with a raised odls_base_sigkill_timeout,
# gives them time to checkpoint; (3) SIGUSR1 (the launcher's rescale request).
. "$(dirname "$0")/common.sh"
common=(train --config "$CONFIGS/tiny.ini" --data-dir "$DATA" --threads 1 --max-steps 100000
        --set train.epochs=50 --set train.eval_each_epoch=false --set checkpoint.every_steps=0)

wait_step() { # run-dir step: wait until the heartbeat shows at least that step
  for _ in $(seq 600); do
    [ -s "$1/heartbeat" ] && [ "$(cut -d' ' -f1 "$1/heartbeat")" -ge "$2" ] && return 0
    sleep 0.05
  done
  fail "no progress in $1"
}

check_stop() { # run-dir reason
  "$PYTHON" - "$1/events.jsonl" "$2" <<'PY' || fail "$1: events"
import json, os, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
stop = [e for e in ev if e["event"] == "stop"]
exits = [e for e in ev if e["event"] == "exit"]
assert len(stop) == 1 and stop[0]["reason"] == sys.argv[2], stop
s = stop[0]["step"]
assert len(exits) == 3 and {e["code"] for e in exits} == {75} and {e["step"] for e in exits} == {s}, exits
assert os.path.exists(stop[0]["path"]), stop
print(f"{sys.argv[2]}: all ranks stopped at step {s}, checkpoint durable {stop[0]['notice_to_durable_s']:.3f} s after the signal")
PY
  "$SPOTTRAIN" inspect "$(ls "$1"/checkpoints/ckpt-*.h5 | tail -n 1)" >/dev/null || fail "$1: checkpoint invalid"
}

# (1) SIGTERM to one rank alone
mpirun -np 3 "${MPIRUN_ARGS[@]}" "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/one" >"$WORK/one.out" 2>"$WORK/one.err" &
mp=$!
wait_step "$WORK/one" 20
# a rank: a child of mpirun named spottrain. Not the newest pid matching the command line:
# mpirun's own command line matches it too, and once pids wrap around (pid_max 32768 on a busy
# machine) mpirun can be the newest; SIGTERM to mpirun ends the job with exit 1 (a flake seen).
victim=$(pgrep -P "$mp" -x spottrain | head -n 1)
[ -n "$victim" ] || fail "no rank of mpirun $mp found"
kill -TERM "$victim"
rc=0; wait "$mp" || rc=$?
[ "$rc" = 75 ] || { cat "$WORK/one.err"; fail "SIGTERM to one rank: mpirun exit $rc, expected 75"; }
check_stop "$WORK/one" sigterm

# (2) SIGTERM to mpirun: ranks get SIGTERM after T = 5 s (default 1) and SIGKILL after 2T
# (mpirun itself in the background, not a shell function: $! must be mpirun)
mpirun -np 3 "${MPIRUN_ARGS[@]}" --mca odls_base_sigkill_timeout 5 "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/all" \
  >"$WORK/all.out" 2>"$WORK/all.err" &
mp=$!
wait_step "$WORK/all" 20
kill -TERM "$mp"
wait "$mp" || true # mpirun reports the forwarded signal itself; the ranks' records say what happened
check_stop "$WORK/all" sigterm

# (3) SIGUSR1 to mpirun: forwarded to every rank, a rescale stop
mpirun -np 3 "${MPIRUN_ARGS[@]}" "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/usr1" >"$WORK/usr1.out" 2>"$WORK/usr1.err" &
mp=$!
wait_step "$WORK/usr1" 20
kill -USR1 "$mp"
rc=0; wait "$mp" || rc=$?
[ "$rc" = 75 ] || { cat "$WORK/usr1.err"; fail "SIGUSR1: exit $rc, expected 75"; }
check_stop "$WORK/usr1" rescale

# the stopped runs resume where they stopped
s=$(cut -d' ' -f1 "$WORK/one/heartbeat")
run_mpi 2 "$SPOTTRAIN" "${common[@]}" --max-steps $((s + 10)) --run-dir "$WORK/one" >"$WORK/one2.out" 2>"$WORK/one2.err" \
  || { cat "$WORK/one2.err"; fail "resume after SIGTERM failed"; }
[ "$(last_json "$WORK/one2.out" steps)" = $((s + 10)) ] || fail "resume did not continue from step $s"
echo "it_sigterm: all checks passed"
