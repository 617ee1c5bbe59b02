# Helpers for the integration tests (sourced). Environment from CTest:
#   SPOTTRAIN  the worker binary     CONFIGS  the configs/ folder
#   MNIST_DIR  original MNIST files  FASHION_DIR  Fashion-MNIST files
#   TESTS_DIR  tests/ folder
set -euo pipefail
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI keeps its own allocations until exit: leak reports under mpirun are not ours.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"

# Debian's python3 (with python3-h5py), not whatever python3 comes first on PATH
PYTHON=/usr/bin/python3

WORK=$(mktemp -d "${TMPDIR:-/tmp}/spottrain-it.XXXXXX")
# SPOTTRAIN_IT_KEEP_FAILED=1 keeps a failed test's work folder (its logs) for diagnosis (scripts/flake.sh sets it)
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "${SPOTTRAIN_IT_KEEP_FAILED:-}" ]; then
    echo "exit $rc: work folder kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# The data set for short tests: the original MNIST when present, else Fashion-MNIST.
if [ -n "${MNIST_DIR:-}" ] && [ -e "$MNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  DATA="$MNIST_DIR"
else
  DATA="${FASHION_DIR:-/usr/share/datasets/fashion-mnist}"
fi

# mpirun on this machine: loopback only, any number of ranks on 2 cores.
MPIRUN_ARGS=(--oversubscribe --bind-to none
  --mca btl self,vader,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
run_mpi() {
  local np=$1; shift
  mpirun -np "$np" "${MPIRUN_ARGS[@]}" "$@"
}

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_exit CODE CMD...: run CMD, require exit CODE, keep its stderr in $WORK/last.err
expect_exit() {
  local want=$1; shift
  local rc=0
  "$@" >"$WORK/last.out" 2>"$WORK/last.err" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    cat "$WORK/last.err" >&2
    fail "expected exit $want, got $rc: $*"
  fi
}

# expect_err PATTERN: the last stderr matches PATTERN (grep -E)
expect_err() {
  grep -Eq -- "$1" "$WORK/last.err" || { cat "$WORK/last.err" >&2; fail "stderr lacks /$1/"; }
}

# ckpt_run_20: trains configs/tiny.ini for 20 steps in $WORK/run with checkpoints at steps 10
# and 20; sets common (the train arguments) and newest (step 20's file), for tests that damage it.
ckpt_run_20() {
  common=(train --config "$CONFIGS/tiny.ini" --data-dir "$DATA" --threads 1 --set checkpoint.every_steps=10
          --set checkpoint.keep=3)
  "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/run" --max-steps 20 >"$WORK/first.out" 2>"$WORK/first.err" ||
    { cat "$WORK/first.err"; fail "first training failed"; }
  newest="$WORK/run/checkpoints/ckpt-00000020.h5"
  [ -f "$newest" ] && [ -f "$WORK/run/checkpoints/ckpt-00000010.h5" ] ||
    { ls -R "$WORK/run"; fail "no checkpoints of steps 10 and 20"; }
}

# refused_then_resumed EVAL_RE INIT_RE SKIP_RE: after ckpt_run_20 and damage to $newest, eval
# --ckpt and train --init-from of it exit 65 with stderr matching EVAL_RE and INIT_RE; a resume
# skips it (stderr matching SKIP_RE), goes on from step 10 and reaches step 30.
refused_then_resumed() {
  expect_exit 65 "$SPOTTRAIN" eval --ckpt "$newest" --data-dir "$DATA" --threads 1
  expect_err "$1"
  expect_exit 65 "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/init" --max-steps 5 --init-from "$newest"
  expect_err "$2"
  expect_exit 0 "$SPOTTRAIN" "${common[@]}" --run-dir "$WORK/run" --max-steps 30
  expect_err "$3"
  expect_err "resuming from .*ckpt-00000010.h5: step 10"
  [ "$(last_json "$WORK/last.out" steps)" = 30 ] || fail "the resumed run did not reach step 30"
}

# last_json FILE KEY: a key of the JSON object on the last line of FILE
last_json() {
  tail -n 1 "$1" | "$PYTHON" -c "import json,sys; print(json.loads(sys.stdin.read())['$2'])"
}
