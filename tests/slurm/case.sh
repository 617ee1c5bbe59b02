#!/usr/bin/env bash
# case.sh CASE - configs/cloud/slurm-spottrain.sbatch, unchanged, submitted with
# sbatch to a real one-node SLURM (cluster.sh) running 2 ranks of spottrain:
#   finish        the job trains to the end: exit 0, RUN/eval.json with the test accuracy
#   timelimit     SIGTERM to the batch shell alone (what --signal=B:TERM@N does before
#                 the time limit), sent with scancel --signal=TERM --batch
#   preempt       an exclusive job in the `urgent` partition preempts it
#                 (PreemptMode=REQUEUE, GraceTime)
#   requeue       scontrol requeue JOB
#   sigkill       one rank killed with SIGKILL (a crash: requeued, resumed from the
#                 last periodic checkpoint)
#   config_error  a config the worker refuses: exit 64, no requeue
# Each case prints the ranks' exit codes, the requeues, the step the job resumed
# from, the steps lost and the seconds from the signal to the durable checkpoint
# and to the first step of the resumed job, and compares the final parameters
# with an uninterrupted run (bit for bit). Exit 77 (skip) without slurm/munge.
# shellcheck source=../integration/common.sh
. "$TESTS_DIR/integration/common.sh"
# shellcheck source=cluster.sh
. "$TESTS_DIR/slurm/cluster.sh"
CASE=${1:?usage: case.sh CASE}
SB=$CONFIGS/cloud/slurm-spottrain.sbatch
STEPS=80     # the job's --max-steps
AT_STEP=25   # interrupt once rank 0 has reached this step
PACE_MS=60   # run.min_step_ms: a job of ~5 s, long enough to be interrupted mid-way

# SLURM_TEST_KEEP=1 keeps the work folder (cluster logs, run directory) for a post-mortem
trap 'slurm_cluster_stop; [ "${SLURM_TEST_KEEP:-0}" = 1 ] && echo "kept $WORK" >&2 || rm -rf "$WORK"' EXIT
slurm_cluster_start "$WORK/cluster"

# the tiny net on the test data; data.dir in the config so that `spottrain eval` finds it too
{ cat "$CONFIGS/tiny.ini"; printf '\n[data]\ndir = %s\n' "$DATA"; } >"$WORK/tiny.ini"
common=(--threads 1 --max-steps "$STEPS" --set train.eval_each_epoch=false --set run.log_every=1
	--set checkpoint.every_steps=20 --set checkpoint.keep=10 --set dist.collective_timeout_s=20)

# the uninterrupted run the job's final parameters must equal
"$SPOTTRAIN" train --config "$WORK/tiny.ini" "${common[@]}" --run-dir "$WORK/ref" >"$WORK/ref.out" 2>"$WORK/ref.err" ||
	{ cat "$WORK/ref.err"; fail "the reference run failed"; }

export SPOTTRAIN SPOTTRAIN_CONFIG=$WORK/tiny.ini RUN_DIR=$WORK/run
export SPOTTRAIN_TRAIN_ARGS="${common[*]} --set run.min_step_ms=$PACE_MS"
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
[ "$CASE" != config_error ] || SPOTTRAIN_TRAIN_ARGS+=" --set no_such.key=1"

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
show_job() {
	echo "---- job output" >&2
	cat "$WORK/job.out" >&2 || true
	echo "---- scontrol show job" >&2
	scontrol show job "$JOB" >&2 || true
}
fail_job() {
	show_job
	fail "$CASE: $*"
}

JOB=$(sbatch --parsable -p spot --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=10 \
	--output="$WORK/job.out" --export=ALL "$SB") || fail "sbatch refused the script"
echo "$CASE: job $JOB submitted" >&2

sig_time=0
if [ "$CASE" != finish ] && [ "$CASE" != config_error ]; then
	slurm_cluster_wait 120 heartbeat_at "$AT_STEP" || fail_job "the job never reached step $AT_STEP"
	sig_time=$(date +%s.%N)
	case $CASE in
	timelimit) scancel --signal=TERM --batch "$JOB" ;;
	preempt) sbatch --parsable -p urgent --nodes=1 --exclusive --output=/dev/null --wrap 'sleep 1' >/dev/null ;;
	requeue) scontrol requeue "$JOB" ;;
	sigkill) kill -KILL "$(pgrep -f "spottrain train .*--run-dir $RUN_DIR" | tail -n 1)" ;;
	*) fail "unknown case $CASE" ;;
	esac || fail_job "could not interrupt the job"
fi
slurm_cluster_wait 150 job_ended "$JOB" || fail_job "the job did not end within 150 s"

state=$(job_field "$JOB" JobState)
exit_code=$(job_field "$JOB" ExitCode)
restarts=$(job_field "$JOB" Restarts)
report=$("$PYTHON" "$TESTS_DIR/slurm/report.py" "$RUN_DIR" "$sig_time")
grep '^slurm-spottrain' "$WORK/job.out" >&2 || true
echo "$CASE: job $state, ExitCode $exit_code, Restarts $restarts" >&2
echo "$CASE: $report" >&2
field() { "$PYTHON" -c "import json,sys; r=json.loads(sys.argv[1]); print($2)" "$report"; }

if [ "$CASE" = config_error ]; then
	[ "$state:$exit_code" = FAILED:64:0 ] || fail_job "expected FAILED with exit 64, got $state $exit_code"
	[ "$restarts" = 0 ] || fail_job "a config error was requeued ($restarts times)"
	grep -q 'not requeueing' "$WORK/job.out" || fail_job "the script did not say why it stops"
	echo "slurm $CASE: all checks passed"
	exit 0
fi

[ "$state:$exit_code" = COMPLETED:0:0 ] || fail_job "expected COMPLETED 0:0, got $state $exit_code"
grep -q 'spottrain eval failed' "$WORK/job.out" && fail_job "the eval step failed"
grep -q '"test_accuracy"' "$RUN_DIR/eval.json" 2>/dev/null || fail_job "no test accuracy in RUN/eval.json"
"$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/ref/final.h5" "$RUN_DIR/final.h5" --bitwise >&2 ||
	fail_job "final parameters differ from the uninterrupted run"
echo "$CASE: eval.json $(cat "$RUN_DIR/eval.json"); final parameters bit-identical to the uninterrupted run" >&2

if [ "$CASE" = finish ]; then
	[ "$restarts" = 0 ] || fail_job "an uninterrupted job was requeued"
	[ "$(field 1 'r["runs"][0]["exit_codes"]')" = "[0, 0]" ] || fail_job "the ranks did not both exit 0"
	echo "slurm $CASE: all checks passed"
	exit 0
fi

[ "$restarts" = 1 ] || fail_job "expected one requeue, got $restarts"
[ "$(field 1 'len(r["runs"])')" = 2 ] || fail_job "expected two runs of the job in events.jsonl"
[ "$(field 1 'r["runs"][1]["exit_codes"]')" = "[0, 0]" ] || fail_job "the resumed run did not end with 0 on both ranks"
if [ "$CASE" = sigkill ]; then
	# a crash: no agreed stop is possible; the job resumes from the last periodic checkpoint
	[ "$(field 1 'r["runs"][1]["resumed_from"] % 20 == 0 and r["runs"][1]["resumed_from"] > 0')" = True ] ||
		fail_job "did not resume from a periodic checkpoint"
else
	# an agreed stop: both ranks exit 75 at one step with a checkpoint, nothing lost
	[ "$(field 1 'r["runs"][0]["exit_codes"]')" = "[75, 75]" ] || fail_job "the ranks did not both exit 75"
	[ "$(field 1 'r["runs"][0]["stop_reason"]')" = sigterm ] || fail_job "no SIGTERM stop recorded"
	[ "$(field 1 'r["runs"][0]["steps_lost"]')" = 0 ] || fail_job "steps were lost"
	[ "$(field 1 'r["runs"][1]["resumed_from"] == r["runs"][0]["stop_step"]')" = True ] ||
		fail_job "did not resume from the stop step"
fi
echo "slurm $CASE: all checks passed"
