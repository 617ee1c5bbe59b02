#!/usr/bin/env bash
# slurm-spottrain.sbatch run as SLURM would run it, with a fake srun, scancel,
# scontrol and mpirun: exit 75 requeues the job (within MAX_REQUEUES), 0 evaluates
# with the same launcher, config errors do not requeue, and the batch script's
# SIGTERM (--signal=B:TERM@120) reaches the ranks through scancel --signal=TERM
# (not through srun, which would SIGKILL them) while the script waits for the
# checkpoint. tests/slurm/ runs the same script under a real SLURM.
. "$(dirname "$0")/lib.sh"
SB=$CLOUD/slurm-spottrain.sbatch
BIN=$WORK/bin
mkdir -p "$BIN"
cat >"$BIN/srun" <<'FAKE'
#!/usr/bin/env bash
echo "${0##*/} $*" >>"$FAKE_LOG"
case " $* " in
*" eval "*) echo '{"test_accuracy": 0.9012, "loss": 0.29}'; exit 0 ;;
esac
if [ "$FAKE_SRUN" = wait ]; then
	trap 'echo "srun got TERM" >>"$FAKE_LOG"; exit 75' TERM
	echo $$ >"$WORK_DIR/srun.pid"
	touch "$WORK_DIR/started"
	while :; do sleep 0.1; done
fi
run=""
while [ $# -gt 0 ]; do [ "$1" = --run-dir ] && run=$2; shift; done
[ "$FAKE_SRUN" != 0 ] || echo final >"$run/final.h5"
exit "$FAKE_SRUN"
FAKE
cat >"$BIN/scontrol" <<'FAKE'
#!/usr/bin/env bash
echo "scontrol $*" >>"$FAKE_LOG"
exit "${FAKE_SCONTROL_RC:-0}"
FAKE
# scancel --signal=TERM JOB: SLURM signals the job's steps, here the fake srun's "ranks"
cat >"$BIN/scancel" <<'FAKE'
#!/usr/bin/env bash
echo "scancel $*" >>"$FAKE_LOG"
kill -TERM "$(cat "$WORK_DIR/srun.pid")"
FAKE
cp "$BIN/srun" "$BIN/mpirun" # the same fake, logged by its own name
chmod +x "$BIN"/*
export PATH="$BIN:$PATH" WORK_DIR=$WORK

job() { # job SRUN_BEHAVIOUR VAR=VALUE...
	local b=$1
	shift
	rm -rf "$WORK/run" "$WORK/started"
	: >"$FAKE_LOG"
	capture env FAKE_SRUN="$b" SLURM_JOB_ID=4242 SLURM_JOB_NAME=spottrain SLURM_JOB_NUM_NODES=2 SLURM_NTASKS=2 \
		SLURM_SUBMIT_DIR="$WORK" RUN_DIR="$WORK/run" SPOTTRAIN_CONFIG=/cfg/mnist_cnn.ini "$@" bash "$SB"
}

check "sbatch: --signal=B:TERM@120" grep -qx '#SBATCH --signal=B:TERM@120' "$SB"
check "sbatch: --requeue" grep -qx '#SBATCH --requeue' "$SB"
check "sbatch: output appended across requeues" grep -qx '#SBATCH --open-mode=append' "$SB"

job 75
expect_rc "exit 75" 0
expect_grep "exit 75: srun runs spottrain train on the volume" "$FAKE_LOG" \
	"^srun --mpi=pmix --kill-on-bad-exit=0 spottrain train --config /cfg/mnist_cnn.ini --run-dir $WORK/run$"
expect_grep "exit 75: the job requeues itself" "$FAKE_LOG" '^scontrol requeue 4242$'
job 75 SLURM_RESTART_COUNT=50
expect_rc "exit 75 after MAX_REQUEUES requeues: gives up" 75
expect_nogrep "requeue budget spent: no scontrol" "$FAKE_LOG" 'scontrol'
expect_grep "requeue budget spent: says so" "$WORK/err" 'MAX_REQUEUES=50'
job 75 FAKE_SCONTROL_RC=1
expect_rc "scontrol requeue refused" 75
expect_grep "scontrol requeue refused: tells to resubmit" "$WORK/err" 'resubmit by hand'
job 0
expect_rc "finished" 0
expect_nogrep "finished: no requeue" "$FAKE_LOG" 'scontrol'
expect_grep "finished: eval of final.h5 on one task, with the training's MPI plugin" "$FAKE_LOG" \
	"^srun --mpi=pmix --kill-on-bad-exit=0 --nodes=1 --ntasks=1 spottrain eval --ckpt $WORK/run/final.h5$"
expect_grep "finished: RUN/eval.json" "$WORK/run/eval.json" 'test_accuracy'
job 0 LAUNCHER=mpirun MPIRUN_ARGS=--bind-to\ none
expect_rc "LAUNCHER=mpirun: finished" 0
expect_grep "LAUNCHER=mpirun: training" "$FAKE_LOG" \
	"^mpirun --bind-to none spottrain train --config /cfg/mnist_cnn.ini --run-dir $WORK/run$"
expect_grep "LAUNCHER=mpirun: eval on one rank" "$FAKE_LOG" \
	"^mpirun -np 1 --bind-to none spottrain eval --ckpt $WORK/run/final.h5$"
job 0 LAUNCHER=bogus
expect_rc "LAUNCHER=bogus: refused" 64
job 66
expect_rc "missing input: exit 66, no requeue" 66
expect_nogrep "missing input: no scontrol" "$FAKE_LOG" 'scontrol'
job 137
expect_rc "a crash: requeued (REQUEUE_ON_FAILURE=1)" 0
expect_grep "a crash: scontrol requeue" "$FAKE_LOG" '^scontrol requeue 4242$'
job 137 REQUEUE_ON_FAILURE=0
expect_rc "a crash with REQUEUE_ON_FAILURE=0: fails" 137
capture env -u SLURM_JOB_ID bash "$SB"
expect_rc "outside SLURM: refused" 64

# ---- the time-limit warning: SIGTERM to the batch script ----
rm -rf "$WORK/run" "$WORK/started"
: >"$FAKE_LOG"
env FAKE_SRUN=wait SLURM_JOB_ID=4243 SLURM_SUBMIT_DIR="$WORK" RUN_DIR="$WORK/run" SPOTTRAIN_CONFIG=c \
	bash "$SB" >"$WORK/out" 2>"$WORK/err" &
pid=$!
for ((i = 0; i < 100; i++)); do [ -e "$WORK/started" ] && break; sleep 0.1; done
kill -TERM "$pid"
RC=0
wait "$pid" || RC=$?
expect_rc "SIGTERM to the batch script" 0
expect_grep "SIGTERM: sent to the job's steps" "$FAKE_LOG" '^scancel --signal=TERM 4243$'
expect_grep "SIGTERM: reached the ranks" "$FAKE_LOG" '^srun got TERM$'
expect_grep "SIGTERM: the ranks' exit 75 requeues the job" "$FAKE_LOG" '^scontrol requeue 4243$'
expect_grep "SIGTERM: logged" "$WORK/err" 'srun ended with exit 75 after SIGTERM'
finish
