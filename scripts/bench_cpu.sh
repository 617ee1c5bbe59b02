#!/usr/bin/env bash
# bench_cpu.sh - spottrain's CPU kernels side by side with PyTorch (and, optionally, another
# spottrain build such as one of main) on one config, alternated ROUNDS times in one run, so
# that a shared machine's drift hits every contender alike. A benchmark, never a test.
#
#   scripts/bench_cpu.sh [-c CONFIG] [-I CxHxW] [-t THREADS] [-r ROUNDS] [-s STEPS]
#                        [-b OTHER_SPOTTRAIN] [-p PYTHON] [-i ISA ...]
#
# CONFIG defaults to configs/mnist_cnn.ini. PyTorch runs the same network at the same batch
# (the config's train.global_batch) and threads, after 3 warm-up steps as spottrain:
#   configs/mnist_cnn.ini  scripts/torch_mnist_cnn_bench.py (1x28x28 only);
#   configs/resnet20.ini   scripts/torch_resnet_bench.py --synthetic CxHxW;
# for other configs PyTorch is skipped. -I sets model.input (spottrain: --set model.input=CxHxW;
# default 3x32x32, CIFAR-10's shape, for resnet20, the config's own otherwise). For resnet20 with
# 3 input channels the networks are first checked to be the same: spottrain trains one step on a
# small random CIFAR-10-format set written to a temp folder, and the parameter names and shapes
# of its checkpoint (`spottrain inspect`) must be PyTorch's (exit 1 when not). spottrain bench
# itself trains on synthetic data (no data set). PYTHON defaults to /work/venv-torch/bin/python
# (PyPI PyTorch) when present, else python3. -i runs spottrain once per ISA forced with
# SPOTTRAIN_CPU_ISA (avx512, avx2, portable; default: the best ISA only). Prints one line per run
# and a summary: images/s ranges, ratios against PyTorch and the other build (run right after
# spottrain on each ISA of -i, so the ratio is per ISA), the fraction of
# the measured peak (spottrain's peak-FMA loop; PyTorch's with spottrain's FLOP count), the CPU
# model and ISA, PyTorch's version and CPU capability.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: $0 [-c CONFIG] [-I CxHxW] [-t THREADS] [-r ROUNDS] [-s STEPS] [-b OTHER_SPOTTRAIN] [-p PYTHON] [-i ISA ...]"
cfg=$here/configs/mnist_cnn.ini input="" threads=2 rounds=3 steps=20 other="" isas=()
py=/work/venv-torch/bin/python
[ -x "$py" ] || py=python3
while getopts "c:I:t:r:s:b:p:i:" o; do
  case $o in
    c) cfg=$OPTARG ;; I) input=$OPTARG ;; t) threads=$OPTARG ;; r) rounds=$OPTARG ;; s) steps=$OPTARG ;;
    b) other=$OPTARG ;; p) py=$OPTARG ;; i) isas+=("$OPTARG") ;;
    *) echo "$usage" >&2; exit 64 ;;
  esac
done
[ -f "$cfg" ] || { echo "bench_cpu.sh: no config $cfg" >&2; exit 66; }
name=$(basename "$cfg" .ini)
[ -n "$input" ] || [ "$name" != resnet20 ] || input=3x32x32
if [ -n "$input" ] && ! [[ $input =~ ^[1-9][0-9]*x[1-9][0-9]*x[1-9][0-9]*$ ]]; then
  echo "bench_cpu.sh: -I $input is not CxHxW (e.g. 3x32x32)" >&2
  exit 64
fi
st=${SPOTTRAIN:-$here/build/src/spottrain}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
[ ${#isas[@]} -gt 0 ] || isas=(auto)
batch=$(awk -F= '/^global_batch/ {gsub(/ /, "", $2); print $2}' "$cfg")
set_input=()
[ -z "$input" ] || set_input=(--set "model.input=$input")
torch=()
case $name in
  mnist_cnn)
    if [ -z "$input" ] || [ "$input" = 1x28x28 ]; then
      torch=("$py" "$here/scripts/torch_mnist_cnn_bench.py" --device cpu --threads "$threads" --batch "$batch"
             --steps "$steps" --warmup 3 --modes eager)
    fi ;;
  resnet20)
    torch=("$py" "$here/scripts/torch_resnet_bench.py" --synthetic "$input" --threads "$threads" --batch "$batch"
           --steps "$steps" --warmup 3) ;;
esac
[ ${#torch[@]} -gt 0 ] || echo "(no PyTorch twin for $name${input:+ at $input}: spottrain only)"

# run_json FILE CMD...: CMD's last stdout line (its JSON) appended to FILE; on failure, its stderr.
run_json() {
  local f=$1
  shift
  if ! "$@" >"$out/stdout" 2>"$out/stderr"; then
    echo "bench_cpu.sh: failed: $*" >&2
    tail -n 15 "$out/stderr" >&2
    exit 1
  fi
  tail -n 1 "$out/stdout" >>"$f"
}

# The same network: resnet20's parameter names and shapes (they depend on C only) in a spottrain
# checkpoint of one step on a random CIFAR-10-format set, against PyTorch's.
if [ "$name" = resnet20 ] && [ "${input%%x*}" = 3 ]; then
  "$py" - "$out/cifar" <<'PY'
import os, random, sys
os.makedirs(sys.argv[1])
rng = random.Random(1)
for f, n in [("data_batch_%d.bin" % i, 52) for i in range(1, 6)] + [("test_batch.bin", 64)]:
    with open(os.path.join(sys.argv[1], f), "wb") as fh:
        fh.write(b"".join(bytes([i % 10]) + rng.randbytes(3072) for i in range(n)))
PY
  run_json "$out/train" "$st" train --config "$cfg" --set model.input=3x32x32 --data-dir "$out/cifar" \
    --run-dir "$out/run" --max-steps 1 --threads "$threads" --set checkpoint.every_steps=0
  "$st" inspect "$out/run/final.h5" >"$out/inspect"
  if ! "$py" "$here/scripts/torch_resnet_bench.py" --synthetic 3x32x32 --compare-inspect "$out/inspect" >"$out/parity"; then
    echo "bench_cpu.sh: spottrain's $name and PyTorch's differ: $(cat "$out/parity")" >&2
    exit 1
  fi
  "$py" -c 'import json,sys; j=json.load(sys.stdin); print("same network: %d parameter tensors, %d parameters, the same names and shapes in spottrain and PyTorch" % (j["tensors"], j["params"]))' <"$out/parity"
fi

echo "$name${input:+ at $input}, batch $batch, $threads threads, $steps steps after 3 warm-up, $rounds rounds"
for _ in $(seq "$rounds"); do
  for isa in "${isas[@]}"; do
    run_json "$out/spottrain-$isa" env SPOTTRAIN_CPU_ISA="$([ "$isa" = auto ] || echo "$isa")" \
      "$st" bench --config "$cfg" "${set_input[@]}" --threads "$threads" --steps "$steps" --warmup 3
    tail -n 1 "$out/spottrain-$isa" | "$py" -c 'import json,sys; j=json.load(sys.stdin); print("spottrain %-8s %7.1f img/s  %.1f GFLOP/s, peak %.1f (%.0f%%)" % (j.get("cpu_isa","?"), j["images_per_s"], j["gflops"], j.get("peak_gflops",0), 100*j.get("fraction_of_peak",0)))'
    if [ -n "$other" ]; then # the other build right after, on the same ISA: a pair per round
      run_json "$out/other-$isa" env SPOTTRAIN_CPU_ISA="$([ "$isa" = auto ] || echo "$isa")" \
        "$other" bench --config "$cfg" "${set_input[@]}" --threads "$threads" --steps "$steps" --warmup 3
      tail -n 1 "$out/other-$isa" | "$py" -c 'import json,sys; j=json.load(sys.stdin); print("other    %-8s %7.1f img/s  %.1f GFLOP/s" % (j.get("cpu_isa","?"), j["images_per_s"], j["gflops"]))'
    fi
  done
  if [ ${#torch[@]} -gt 0 ]; then
    run_json "$out/torch" "${torch[@]}"
    tail -n 1 "$out/torch" | "$py" -c 'import json,sys; j=json.load(sys.stdin); print("pytorch eager      %7.1f img/s" % j["images_per_s"])'
  fi
done
"$py" - "$out" "$py" <<'PY'
import json, os, platform, sys
d = sys.argv[1]
def load(name):
    p = os.path.join(d, name)
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
torch_runs = load("torch")
torch = [j["images_per_s"] for j in torch_runs]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = open("/proc/cpuinfo").read()
isa = "avx512f" if " avx512f" in flags else ("avx2+fma" if " avx2" in flags and " fma" in flags else "sse2")
print(f"CPU: {cpu}, best ISA {isa}, python {platform.python_version()}")
if torch_runs:
    j = torch_runs[0]
    print(f"PyTorch {j.get('torch', '?')}, CPU capability {j.get('cpu_capability', '?')}, {j.get('threads', '?')} threads")
best = {}  # per round: the largest peak and spottrain's FLOPs per image
for f in sorted(os.listdir(d)):
    if not f.startswith("spottrain-"):
        continue
    runs = load(f)
    v = [j["images_per_s"] for j in runs]
    fr = [j.get("fraction_of_peak", 0) for j in runs]
    for k, j in enumerate(runs):
        if j.get("peak_gflops", 0) > best.get(k, (0, 0))[0]:
            best[k] = (j["peak_gflops"], j["gflops"] * 1e9 / j["images_per_s"])
    line = f"spottrain {runs[0].get('cpu_isa', '?')}: {min(v):.0f}-{max(v):.0f} img/s, {100*min(fr):.0f}-{100*max(fr):.0f}% of peak"
    if torch:
        r = [a / b for a, b in zip(v, torch)]
        line += f"; vs PyTorch {min(torch):.0f}-{max(torch):.0f} img/s: {min(r):.2f}-{max(r):.2f}x"
    other = [j["images_per_s"] for j in load("other-" + f[len("spottrain-"):])]
    if other:
        r = [a / b for a, b in zip(v, other)]
        line += f"; vs other build on it {min(other):.0f}-{max(other):.0f} img/s: {min(r):.2f}-{max(r):.2f}x"
    print(line)
if torch and best:
    fr = [t * best[k][1] / 1e9 / best[k][0] for k, t in enumerate(torch) if k in best]
    print(f"PyTorch eager: {min(torch):.0f}-{max(torch):.0f} img/s, {100*min(fr):.0f}-{100*max(fr):.0f}% of the measured peak "
          "(the round's largest; spottrain's FLOP count)")
PY
