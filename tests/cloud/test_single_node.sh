#!/usr/bin/env bash
# spottrain-single-run (the one-spot-VM unit's script) with a fake spottrain,
# mpirun, systemctl and aws: exit 0 -> eval, DONE, unit disabled; exit 75 -> ends
# cleanly (the next boot resumes) or resumes when no interruption came; config
# errors end without retry; SIGTERM reaches the ranks and the script waits.
. "$(dirname "$0")/lib.sh"
S=$CLOUD/spottrain-single-run
BIN=$WORK/bin
mkdir -p "$BIN"

# fake spottrain: train exits with the next code of $FAKE_TRAIN_RCS (a file of
# codes, one per line); "wait" waits for SIGTERM/SIGUSR1, then exits 75.
cat >"$BIN/spottrain" <<'FAKE'
#!/usr/bin/env bash
echo "spottrain $*" >>"$FAKE_LOG"
if [ "$1" = eval ]; then
	echo "evaluating" >&2
	echo '{"test_accuracy": 0.9123, "loss": 0.2456}'
	exit 0
fi
run=""
while [ $# -gt 0 ]; do [ "$1" = --run-dir ] && run=$2; shift; done
code=$(head -n 1 "$FAKE_TRAIN_RCS"); sed -i 1d "$FAKE_TRAIN_RCS"
if [ "$code" = wait ]; then
	trap 'echo "spottrain got TERM" >>"$FAKE_LOG"; exit 75' TERM
	trap 'echo "spottrain got USR1" >>"$FAKE_LOG"; exit 75' USR1
	touch "$WORK_DIR/started"
	while :; do sleep 0.1; done
fi
if [ "$code" = 0 ]; then
	echo final >"$run/final.h5"
	[ "${FAKE_NO_FINAL:-0}" = 1 ] && rm -f "$run/final.h5"
	echo '{"status": "finished", "epochs": 1, "steps": 469, "world_size": 1, "loss": 0.31, "test_accuracy": 0.9123}'
fi
exit "$code"
FAKE
cat >"$BIN/mpirun" <<'FAKE'
#!/usr/bin/env bash
echo "mpirun $*" >>"$FAKE_LOG"
trap 'echo "mpirun got USR1" >>"$FAKE_LOG"; exit 75' USR1
trap 'echo "mpirun got TERM" >>"$FAKE_LOG"; exit 1' TERM
touch "$WORK_DIR/started"
while :; do sleep 0.1; done
FAKE
cat >"$BIN/systemctl" <<'FAKE'
#!/usr/bin/env bash
echo "systemctl $*" >>"$FAKE_LOG"
[ "$1" != is-system-running ] || echo "${FAKE_SYSTEM_STATE:-running}"
exit 0
FAKE
chmod +x "$BIN"/*
export PATH="$BIN:$PATH" WORK_DIR=$WORK FAKE_TRAIN_RCS=$WORK/rcs
RUN=$WORK/vol/run1

single() { # single "CODES" VAR=VALUE...: run the script with train exit codes CODES
	rm -rf "$WORK/vol" "$WORK/started"
	mkdir -p "$WORK/vol"
	# shellcheck disable=SC2086 # one code a line
	printf '%s\n' $1 >"$FAKE_TRAIN_RCS"
	shift
	: >"$FAKE_LOG"
	capture env SPOTTRAIN_RUN_DIR="$RUN" SPOTTRAIN_CONFIG=/opt/spottrain/src/configs/mnist_cnn.ini \
		SPOTTRAIN_USER= RESUME_AFTER_STOP_S=0 "$@" "$S"
}
calls() { grep -c "^$1" "$FAKE_LOG"; }

single "0"
expect_rc "finished run" 0
expect_grep "finished: train called with the config and the run dir" "$FAKE_LOG" \
	"^spottrain train --config /opt/spottrain/src/configs/mnist_cnn.ini --run-dir $RUN$"
expect_grep "finished: eval of RUN/final.h5" "$FAKE_LOG" "^spottrain eval --ckpt $RUN/final.h5$"
expect_grep "finished: RUN/eval.json holds eval's JSON line" "$RUN/eval.json" '^\{"test_accuracy": 0.9123, "loss": 0.2456\}$'
expect_grep "finished: RUN/train-result.json holds train's last line" "$RUN/train-result.json" '"status": "finished"'
check "finished: RUN/DONE is JSON with train and eval" python3 -c "import json,sys; d=json.load(open('$RUN/DONE')); assert d['eval']['test_accuracy'] == 0.9123 and d['train']['status'] == 'finished'"
expect_grep "finished: the unit disables itself" "$FAKE_LOG" '^systemctl disable spottrain-single.service$'
expect_nogrep "finished: DONE_ACTION=none powers nothing off" "$FAKE_LOG" 'poweroff'

# the next boot after the end: nothing to do
printf '0\n' >"$FAKE_TRAIN_RCS"
: >"$FAKE_LOG"
capture env SPOTTRAIN_RUN_DIR="$RUN" SPOTTRAIN_CONFIG=x SPOTTRAIN_USER= "$S"
expect_rc "after DONE: the next boot" 0
check "after DONE: no training" test "$(calls 'spottrain train')" -eq 0
expect_grep "after DONE: disables the unit again" "$FAKE_LOG" '^systemctl disable spottrain-single.service$'

single "75"
expect_rc "stopped with a checkpoint: the unit ends cleanly (75 is SuccessExitStatus)" 75
check "stopped: not DONE" test ! -e "$RUN/DONE"
expect_nogrep "stopped: the unit stays enabled for the next boot" "$FAKE_LOG" 'systemctl disable'
single "75" RESUME_AFTER_STOP_S=300 FAKE_SYSTEM_STATE=stopping
expect_rc "stopped while the VM shuts down: ends at once" 75
single "75 0" RESUME_AFTER_STOP_S=1
expect_rc "stopped but no interruption came: resumed and finished" 0
check "resumed: train ran twice" test "$(calls 'spottrain train')" -eq 2
check "resumed: DONE" test -e "$RUN/DONE"
single "65"
expect_rc "bad data: exit 65, no retry" 65
check "bad data: train ran once" test "$(calls 'spottrain train')" -eq 1
expect_grep "bad data: tells how to restart" "$WORK/err" 'systemctl restart spottrain-single.service'
single "74"
expect_rc "I/O error: exit 74 for systemd's Restart=on-failure" 74
single "0" FAKE_NO_FINAL=1
expect_rc "exit 0 without final.h5 is an error" 74
single "0" SPOTTRAIN_TRAIN_ARGS="--epochs 2 --threads 4"
expect_grep "extra train arguments passed on" "$FAKE_LOG" 'train --config .* --run-dir .* --epochs 2 --threads 4$'
single "0" DONE_ACTION=poweroff
expect_grep "DONE_ACTION=poweroff" "$FAKE_LOG" '^systemctl poweroff$'
mkdir -p "$WORK/awsfix"
echo "sir-0a1b2c3d" >"$WORK/awsfix/describe-instances.json"
echo "{}" >"$WORK/awsfix/cancel-spot-instance-requests.json"
single "0" DONE_ACTION=cancel-spot-request INSTANCE_ID=i-0123456789abcdef0 FAKE_AWS_DIR="$WORK/awsfix"
expect_rc "DONE_ACTION=cancel-spot-request" 0
expect_grep "cancel: looks up this instance's spot request" "$FAKE_LOG" 'describe-instances \| --instance-ids \| i-0123456789abcdef0'
expect_grep "cancel: cancels it" "$FAKE_LOG" 'cancel-spot-instance-requests \| --spot-instance-request-ids \| sir-0a1b2c3d'
expect_grep "cancel: then powers off" "$FAKE_LOG" '^systemctl poweroff$'
single "0" DONE_ACTION=reboot
expect_rc "bad DONE_ACTION" 64

# ---- SIGTERM (shutdown / systemctl stop) reaches the ranks ----
term_test() { # term_test NAME VAR=VALUE...
	local name=$1 pid i
	shift
	rm -rf "$WORK/vol" "$WORK/started"
	mkdir -p "$WORK/vol"
	echo wait >"$FAKE_TRAIN_RCS"
	: >"$FAKE_LOG"
	env SPOTTRAIN_RUN_DIR="$RUN" SPOTTRAIN_CONFIG=c SPOTTRAIN_USER= RESUME_AFTER_STOP_S=300 "$@" "$S" \
		>"$WORK/out" 2>"$WORK/err" &
	pid=$!
	for ((i = 0; i < 100; i++)); do [ -e "$WORK/started" ] && break; sleep 0.1; done
	kill -TERM "$pid"
	RC=0
	wait "$pid" || RC=$?
	expect_rc "$name: SIGTERM -> agreed stop -> the script ends with 75" 75
}
term_test "one rank"
expect_grep "one rank: spottrain got SIGTERM" "$FAKE_LOG" '^spottrain got TERM$'
term_test "mpirun, 2 ranks" SPOTTRAIN_NP=2
expect_grep "2 ranks: mpirun -np 2, no kill delay after the agreed stop" "$FAKE_LOG" \
	"^mpirun -np 2 --bind-to none --mca odls_base_sigkill_timeout 0 spottrain train --config c --run-dir $RUN$"
expect_grep "2 ranks: mpirun got SIGUSR1 (forwarded to the ranks: agreed stop)" "$FAKE_LOG" '^mpirun got USR1$'
expect_nogrep "2 ranks: mpirun did not get SIGTERM" "$FAKE_LOG" 'mpirun got TERM'

# ---- as root: spottrain runs as SPOTTRAIN_USER (setpriv), the script stays root ----
if [ "$(id -u)" -eq 0 ] && id -u nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
	# the test's files must be reachable for nobody
	chmod 0755 "$WORK" "$BIN"
	chmod 0666 "$FAKE_LOG" "$FAKE_TRAIN_RCS"
	rm -rf "$WORK/vol"
	mkdir -p "$WORK/vol" && chown nobody "$WORK/vol"
	printf '0\n' >"$FAKE_TRAIN_RCS"
	: >"$FAKE_LOG"
	# shellcheck disable=SC2016 # the fake logs its uid from now on
	sed -i 's/^echo "spottrain \$\*" >>"\$FAKE_LOG"$/echo "spottrain $* uid=$(id -u)" >>"$FAKE_LOG"/' "$BIN/spottrain"
	capture env SPOTTRAIN_RUN_DIR="$RUN" SPOTTRAIN_CONFIG=c SPOTTRAIN_USER=nobody DONE_ACTION=none "$S"
	expect_rc "as root with SPOTTRAIN_USER=nobody" 0
	expect_grep "setpriv: train ran as nobody" "$FAKE_LOG" "^spottrain train .* uid=$(id -u nobody)$"
	expect_grep "setpriv: eval ran as nobody" "$FAKE_LOG" "^spottrain eval .* uid=$(id -u nobody)$"
	check "setpriv: the run directory was made by nobody" test "$(stat -c %U "$RUN")" = nobody
	expect_grep "setpriv: the script itself (root) disabled the unit" "$FAKE_LOG" '^systemctl disable spottrain-single.service$'
else
	echo "skip [setpriv]: not root, or no user nobody / setpriv"
fi

rm -rf "$WORK/vol"
capture env SPOTTRAIN_RUN_DIR="$RUN" SPOTTRAIN_CONFIG=c SPOTTRAIN_USER=spottrain "$S" --dry-run
expect_rc "dry run" 0
expect_grep "dry run: prints the train command" "$WORK/out" "^\+ .*spottrain train --config c --run-dir $RUN$"
finish
