#!/usr/bin/env bash
# bench_cpu.sh - spottrain's CPU kernels side by side with PyTorch (and, optionally, another
# spottrain build such as one of main) on one config, alternated ROUNDS times in one run, so
# that a shared machine's drift hits every contender alike. A benchmark, never a test.
#
#   scripts/bench_cpu.sh [-c CONFIG] [-t THREADS] [-r ROUNDS] [-s STEPS] [-b OTHER_SPOTTRAIN]
#                        [-p PYTHON] [-i ISA ...]
#
# CONFIG defaults to configs/mnist_cnn.ini (PyTorch runs scripts/torch_mnist_cnn_bench.py,
# the same network; for other configs PyTorch is skipped). PYTHON defaults to
# /work/venv-torch/bin/python (PyPI PyTorch) when present, else python3. -i runs spottrain once
# per ISA forced with SPOTTRAIN_CPU_ISA (default: the best ISA only). Prints one line per run
# and a summary: images/s ranges, ratios against PyTorch and the other build, the fraction of
# the measured peak (spottrain's peak-FMA loop), the CPU model and ISA.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cfg=$here/configs/mnist_cnn.ini threads=2 rounds=3 steps=20 other="" isas=()
py=/work/venv-torch/bin/python
[ -x "$py" ] || py=python3
while getopts "c:t:r:s:b:p:i:" o; do
  case $o in
    c) cfg=$OPTARG ;; t) threads=$OPTARG ;; r) rounds=$OPTARG ;; s) steps=$OPTARG ;;
    b) other=$OPTARG ;; p) py=$OPTARG ;; i) isas+=("$OPTARG") ;;
    *) echo "usage: $0 [-c CONFIG] [-t THREADS] [-r ROUNDS] [-s STEPS] [-b OTHER_SPOTTRAIN] [-p PYTHON] [-i ISA ...]" >&2; exit 64 ;;
  esac
done
st=${SPOTTRAIN:-$here/build/src/spottrain}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
[ ${#isas[@]} -gt 0 ] || isas=(auto)
batch=$(awk -F= '/^global_batch/ {gsub(/ /, "", $2); print $2}' "$cfg")
for _ in $(seq "$rounds"); do
  for isa in "${isas[@]}"; do
    SPOTTRAIN_CPU_ISA=$([ "$isa" = auto ] || echo "$isa") "$st" bench --config "$cfg" --threads "$threads" --steps "$steps" --warmup 3 2>/dev/null | tail -n 1 >>"$out/spottrain-$isa"
    tail -n 1 "$out/spottrain-$isa" | "$py" -c 'import json,sys; j=json.load(sys.stdin); print("spottrain %-8s %7.1f img/s  %.1f GFLOP/s, peak %.1f (%.0f%%)" % (j.get("cpu_isa","?"), j["images_per_s"], j["gflops"], j.get("peak_gflops",0), 100*j.get("fraction_of_peak",0)))'
  done
  if [ -n "$other" ]; then
    "$other" bench --config "$cfg" --threads "$threads" --steps "$steps" --warmup 3 2>/dev/null | tail -n 1 >>"$out/other"
    tail -n 1 "$out/other" | "$py" -c 'import json,sys; j=json.load(sys.stdin); print("other build        %7.1f img/s  %.1f GFLOP/s" % (j["images_per_s"], j["gflops"]))'
  fi
  if [ "$(basename "$cfg")" = mnist_cnn.ini ]; then
    "$py" "$here/scripts/torch_mnist_cnn_bench.py" --device cpu --threads "$threads" --batch "$batch" \
      --steps "$steps" --warmup 3 --modes eager 2>/dev/null | tail -n 1 >>"$out/torch"
    tail -n 1 "$out/torch" | "$py" -c 'import json,sys; j=json.load(sys.stdin); print("pytorch eager      %7.1f img/s" % j["images_per_s"])'
  fi
done
"$py" - "$out" "$py" <<'PY'
import json, os, platform, sys
d = sys.argv[1]
def ips(name):
    p = os.path.join(d, name)
    return [json.loads(l)["images_per_s"] for l in open(p)] if os.path.exists(p) else []
torch = ips("torch"); other = ips("other")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = open("/proc/cpuinfo").read()
isa = "avx512f" if " avx512f" in flags else ("avx2+fma" if " avx2" in flags and " fma" in flags else "sse2")
print(f"CPU: {cpu}, best ISA {isa}, python {platform.python_version()}")
for f in sorted(os.listdir(d)):
    if not f.startswith("spottrain-"):
        continue
    runs = [json.loads(l) for l in open(os.path.join(d, f))]
    v = [j["images_per_s"] for j in runs]
    fr = [j.get("fraction_of_peak", 0) for j in runs]
    line = f"spottrain {runs[0].get('cpu_isa', '?')}: {min(v):.0f}-{max(v):.0f} img/s, {100*min(fr):.0f}-{100*max(fr):.0f}% of peak"
    if torch:
        r = [a / b for a, b in zip(v, torch)]
        line += f"; vs PyTorch {min(torch):.0f}-{max(torch):.0f} img/s: {min(r):.2f}-{max(r):.2f}x"
    if other:
        r = [a / b for a, b in zip(v, other)]
        line += f"; vs other build {min(other):.0f}-{max(other):.0f} img/s: {min(r):.2f}-{max(r):.2f}x"
    print(line)
PY
