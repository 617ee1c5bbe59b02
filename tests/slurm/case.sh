#!/usr/bin/env bash
# case.sh CASE[,CASE...] - configs/cloud/slurm-spottrain.sbatch, unchanged, submitted
# with sbatch to a real one-node SLURM (cluster.sh) running 2 ranks of spottrain. One
# job; each listed interruption hits it in turn (each once the job has run again and
# passed a later step), then the job trains to the end:
#   finish        no interruption: exit 0, RUN/eval.json with the test accuracy
#   timelimit     SIGTERM to the batch shell alone (what --signal=B:TERM@N does before
#                 the time limit), sent with scancel --signal=TERM --batch
#   preempt       an exclusive job in the `urgent` partition preempts it
#                 (PreemptMode=REQUEUE, GraceTime)
#   requeue       scontrol requeue JOB
#   sigkill       one rank killed with SIGKILL (a crash: requeued, resumed from the
#                 newest checkpoint, steps since then lost)
#   config_error  (alone) a config the worker refuses: exit 64, no requeue
# For each interruption it prints the ranks' exit codes, the requeue count, the step
# the job resumed from, the steps lost and the seconds from the signal to the durable
# checkpoint and to the first step of the resumed job; at the end it compares the
# final parameters with an uninterrupted run (bit for bit). Exit 77 (skip) without
# slurm-wlm/munge. Environment as for the integration tests (ctest sets it).
# SLURM_TEST_KEEP=1 keeps the work folder (cluster logs, run directory).
# shellcheck source=../integration/common.sh
. "$TESTS_DIR/integration/common.sh"
# shellcheck source=cluster.sh
. "$TESTS_DIR/slurm/cluster.sh"
IFS=, read -r -a CASES <<<"${1:?usage: case.sh CASE[,CASE...]}"
case ${CASES[0]} in finish | config_error) CASES=() ;; esac
SB=$CONFIGS/cloud/slurm-spottrain.sbatch
AFTER=12   # each interruption once the run has done this many steps (the first: 2x)
PACE_MS=60 # run.min_step_ms: long enough to interrupt the job mid-way
# the job's --max-steps: room for each run's steps, and for the steps a run makes
# between the signal and its stop (a preemption waits for the scheduler: ~1 s)
STEPS=$((2 * AFTER + 35 * ${#CASES[@]} + 10))

trap 'slurm_cluster_stop; [ "${SLURM_TEST_KEEP:-0}" = 1 ] && echo "kept $WORK" >&2 || rm -rf "$WORK"' EXIT
slurm_cluster_start "$WORK/cluster"

# the tiny net on the test data; data.dir in the config so that `spottrain eval` finds it too
{
	cat "$CONFIGS/tiny.ini"
	printf '\n[data]\ndir = %s\n' "$DATA"
} >"$WORK/tiny.ini"
common=(--threads 1 --max-steps "$STEPS" --set train.eval_each_epoch=false --set run.log_every=1
	--set checkpoint.every_steps=20 --set checkpoint.keep=20 --set dist.collective_timeout_s=20)

# the uninterrupted run the job's final parameters must equal
"$SPOTTRAIN" train --config "$WORK/tiny.ini" "${common[@]}" --run-dir "$WORK/ref" >"$WORK/ref.out" 2>"$WORK/ref.err" ||
	{
		cat "$WORK/ref.err"
		fail "the reference run failed"
	}

export SPOTTRAIN SPOTTRAIN_CONFIG=$WORK/tiny.ini RUN_DIR=$WORK/run
export SPOTTRAIN_TRAIN_ARGS="${common[*]} --set run.min_step_ms=$PACE_MS"
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
[ "${1}" != config_error ] || SPOTTRAIN_TRAIN_ARGS+=" --set no_such.key=1"

job_field() { # JOB FIELD: one field of scontrol show job
	scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"
}
job_ended() { # JOB: the job is in a final state (not pending a requeue)
	case $(job_field "$1" JobState) in
	COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) return 0 ;;
	esac
	return 1
}
heartbeat_at() { # STEP: rank 0's heartbeat shows at least STEP
	[ -s "$RUN_DIR/heartbeat" ] && [ "$(cut -d' ' -f1 "$RUN_DIR/heartbeat")" -ge "$1" ]
}
runs_started() { # N: at least N runs of the job have started (rank 0's start events)
	[ "$(grep -c '"event":"start"' "$RUN_DIR/events.jsonl" 2>/dev/null)" -ge "$1" ]
}
fail_job() {
	echo "---- job output" >&2
	cat "$WORK/job.out" >&2 || true
	echo "---- scontrol show job" >&2
	scontrol show job "$JOB" >&2 || true
	fail "$1: $2"
}

JOB=$(sbatch --parsable -p spot --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=10 \
	--output="$WORK/job.out" --export=ALL "$SB") || fail "$1" "sbatch refused the script"
echo "$1: job $JOB submitted, $STEPS steps" >&2

sig_times=()
for i in "${!CASES[@]}"; do
	c=${CASES[$i]}
	slurm_cluster_wait 120 runs_started $((i + 1)) || fail_job "$c" "run $i of the job never started"
	from=$(grep '"event":"start"' "$RUN_DIR/events.jsonl" | tail -n 1 | sed 's/.*"step":\([0-9]*\).*/\1/')
	at=$((from + AFTER * (i == 0 ? 2 : 1)))
	slurm_cluster_wait 120 heartbeat_at "$at" || fail_job "$c" "the job never reached step $at"
	sig_times+=("$(date +%s.%N)")
	case $c in
	timelimit) scancel --signal=TERM --batch "$JOB" ;;
	preempt) sbatch --parsable -p urgent --nodes=1 --exclusive --output=/dev/null --wrap 'sleep 1' >/dev/null ;;
	requeue) scontrol requeue "$JOB" ;;
	# a rank (named spottrain), never srun, whose command line names the same run dir
	sigkill) kill -KILL "$(pgrep -a -x spottrain | grep -F -- "--run-dir $RUN_DIR" | head -n 1 | cut -d' ' -f1)" ;;
	*) fail "unknown case $c" ;;
	esac || fail_job "$c" "could not interrupt the job"
	echo "$c: sent at step $(cut -d' ' -f1 "$RUN_DIR/heartbeat")" >&2
done
slurm_cluster_wait 150 job_ended "$JOB" || fail_job "$1" "the job did not end within 150 s"

state=$(job_field "$JOB" JobState)
exit_code=$(job_field "$JOB" ExitCode)
restarts=$(job_field "$JOB" Restarts)
report=$("$PYTHON" "$TESTS_DIR/slurm/report.py" "$RUN_DIR" "${sig_times[@]}")
grep '^slurm-spottrain' "$WORK/job.out" >&2 || true
echo "$1: job $state, ExitCode $exit_code, Restarts $restarts" >&2
run() { # I EXPR: a Python expression over r = the report's run I
	"$PYTHON" -c "import json,sys; r=json.loads(sys.argv[1])['runs'][int(sys.argv[2])]; print($2)" "$report" "$1"
}

if [ "$1" = config_error ]; then
	[ "$state:$exit_code" = FAILED:64:0 ] || fail_job "$1" "expected FAILED with exit 64, got $state $exit_code"
	[ "$restarts" = 0 ] || fail_job "$1" "a config error was requeued ($restarts times)"
	grep -q 'not requeueing' "$WORK/job.out" || fail_job "$1" "the script did not say why it stops"
	echo "slurm $1: all checks passed"
	exit 0
fi

for i in "${!CASES[@]}"; do
	c=${CASES[$i]}
	echo "$c: $(run "$i" 'json.dumps(r)')" >&2
	[ "$(run $((i + 1)) 'r["resumed_from"] is not None')" = True ] || fail_job "$c" "the job did not resume"
	if [ "$c" = sigkill ]; then
		# a crash: no agreed stop; the job resumes from the newest checkpoint of that run
		[ "$(run "$i" 'r["start_step"] <= r["resumed_by_next"] <= r["last_step"]')" = True ] ||
			fail_job "$c" "did not resume from a checkpoint of the killed run"
	else
		# an agreed stop: both ranks exit 75 at one step with a checkpoint, nothing lost
		[ "$(run "$i" 'r["exit_codes"]')" = "[75, 75]" ] || fail_job "$c" "the ranks did not both exit 75"
		# (LAUNCHER=mpirun: the batch shell's TERM reaches the ranks as mpirun's SIGUSR1)
		reason=sigterm
		[ "${LAUNCHER:-srun}:$c" != mpirun:timelimit ] || reason=rescale
		[ "$(run "$i" 'r["stop_reason"]')" = $reason ] || fail_job "$c" "no $reason stop recorded"
		[ "$(run "$i" 'r["steps_lost"]')" = 0 ] || fail_job "$c" "steps were lost"
		[ "$(run "$i" 'r["resumed_by_next"] == r["stop_step"]')" = True ] || fail_job "$c" "did not resume from the stop step"
	fi
done
n=${#CASES[@]}
[ "$state:$exit_code" = COMPLETED:0:0 ] || fail_job "$1" "expected COMPLETED 0:0, got $state $exit_code"
[ "$restarts" = "$n" ] || fail_job "$1" "expected $n requeues, got $restarts"
[ "$(run "$n" 'r["exit_codes"]')" = "[0, 0]" ] || fail_job "$1" "the last run did not end with 0 on both ranks"
! grep -q 'spottrain eval failed' "$WORK/job.out" || fail_job "$1" "the eval step failed"
grep -q '"test_accuracy"' "$RUN_DIR/eval.json" 2>/dev/null || fail_job "$1" "no test accuracy in RUN/eval.json"
"$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/ref/final.h5" "$RUN_DIR/final.h5" --bitwise >&2 ||
	fail_job "$1" "final parameters differ from the uninterrupted run"
echo "$1: eval.json $(cat "$RUN_DIR/eval.json"); final parameters bit-identical to the uninterrupted run" >&2
echo "slurm $1: all checks passed"
