#!/usr/bin/env bash
# Invariant 1 across CPU ISAs (issue 17): a W = 2 run whose two ranks are
# forced to different kernels (mpirun MPMD, SPOTTRAIN_CPU_ISA = the best ISA
# here on rank 0, portable on rank 1) ends with the same parameters and
# optimizer state, bit for bit, as a W = 1 run on the best ISA and as a W = 1
# run on the portable kernels. The first log line names the kernels; forcing
# an ISA the CPU lacks (or no ISA at all) exits 64 before any step.
# Small on purpose (the portable kernels call fmaf per term): 4 steps of 32.
. "$(dirname "$0")/common.sh"
cfg="$CONFIGS/mnist_cnn.ini"
args=(train --config "$cfg" --data-dir "$DATA" --max-steps 4 --threads 1 --set layer.conv2.filters=8
      --set train.global_batch=32 --set run.log_every=1 --set train.eval_each_epoch=false --set checkpoint.every_steps=0)
best=$(grep -qw avx512f /proc/cpuinfo && echo avx512 || { grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && echo avx2; } || echo portable)

check_run() { # name world
  [ "$(last_json "$WORK/$1.out" steps)" = 4 ] || { cat "$WORK/$1.err"; fail "run $1 did not run 4 steps"; }
  [ "$(last_json "$WORK/$1.out" world_size)" = "$2" ] || fail "run $1: world size"
}
SPOTTRAIN_CPU_ISA=$best run_mpi 1 "$SPOTTRAIN" "${args[@]}" --run-dir "$WORK/best" >"$WORK/best.out" 2>"$WORK/best.err" \
  || { cat "$WORK/best.err"; fail "W=1 on $best failed"; }
check_run best 1
head -n 1 "$WORK/best.err" | grep -q "CPU kernels: $best " || { head -n 3 "$WORK/best.err"; fail "first log line does not name $best"; }
SPOTTRAIN_CPU_ISA=portable run_mpi 1 "$SPOTTRAIN" "${args[@]}" --run-dir "$WORK/port" >"$WORK/port.out" 2>"$WORK/port.err" \
  || { cat "$WORK/port.err"; fail "W=1 on portable failed"; }
check_run port 1
grep -q "CPU kernels: portable " "$WORK/port.err" || fail "the log does not name the portable kernels"
# MPMD: one rank per ISA (-x exports the variable to that rank alone)
mpirun "${MPIRUN_ARGS[@]}" -np 1 -x SPOTTRAIN_CPU_ISA="$best" "$SPOTTRAIN" "${args[@]}" --run-dir "$WORK/mixed" \
  : -np 1 -x SPOTTRAIN_CPU_ISA=portable "$SPOTTRAIN" "${args[@]}" --run-dir "$WORK/mixed" -v \
  >"$WORK/mixed.out" 2>"$WORK/mixed.err" || { cat "$WORK/mixed.err"; fail "W=2 mixed ISAs failed"; }
check_run mixed 2
grep -q "spottrain\[1\]: CPU kernels: portable " "$WORK/mixed.err" || { cat "$WORK/mixed.err"; fail "rank 1 did not run portable"; }
cmp_params() { "$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/$1/final.h5" "$WORK/$2/final.h5" "${@:3}"; }
cmp_params best mixed --bitwise --optim || fail "W=2 ($best + portable) is not bit-identical to W=1 on $best"
cmp_params best port --bitwise --optim || fail "W=1 portable is not bit-identical to W=1 on $best"
# On an AVX-512 CPU all three kernels at once: W = 3, one rank per ISA (a spot group mixing
# an AVX-512 type, an AVX2-only type and something older), the same bits as W = 1.
if [ "$best" = avx512 ]; then
  mpirun "${MPIRUN_ARGS[@]}" -np 1 -x SPOTTRAIN_CPU_ISA=avx512 "$SPOTTRAIN" "${args[@]}" --run-dir "$WORK/three" \
    : -np 1 -x SPOTTRAIN_CPU_ISA=avx2 "$SPOTTRAIN" "${args[@]}" --run-dir "$WORK/three" -v \
    : -np 1 -x SPOTTRAIN_CPU_ISA=portable "$SPOTTRAIN" "${args[@]}" --run-dir "$WORK/three" -v \
    >"$WORK/three.out" 2>"$WORK/three.err" || { cat "$WORK/three.err"; fail "W=3 avx512 + avx2 + portable failed"; }
  check_run three 3
  grep -q "spottrain\[1\]: CPU kernels: avx2 " "$WORK/three.err" || { cat "$WORK/three.err"; fail "rank 1 did not run avx2"; }
  cmp_params best three --bitwise --optim || fail "W=3 (avx512 + avx2 + portable) is not bit-identical to W=1 on avx512"
fi
# steps ran with a finite loss (check_run required 4 steps)
"$PYTHON" - "$WORK/best/metrics.jsonl" <<'PY' || fail "no finite loss recorded"
import json, sys
losses = [json.loads(l)["loss"] for l in open(sys.argv[1]) if '"loss"' in l]
assert losses and all(l == l for l in losses), losses
PY
# an ISA the CPU lacks, or a name that is none: exit 64 (EXIT_USAGE) with a message
missing=$([ "$best" = avx512 ] && echo sse9 || echo avx512)
SPOTTRAIN_CPU_ISA=$missing expect_exit 64 run_mpi 1 "$SPOTTRAIN" "${args[@]}" --run-dir "$WORK/bad"
grep -q "SPOTTRAIN_CPU_ISA = '\?$missing" "$WORK/last.err" || { cat "$WORK/last.err"; fail "no message naming $missing"; }
expect_exit 64 "$SPOTTRAIN" "${args[@]}" --run-dir "$WORK/bad2" --set run.cpu_isa=avx9
echo "it_isa: all checks passed ($best and portable)"
