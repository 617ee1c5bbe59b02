#!/usr/bin/env bash
# resnet_bench.sh - issue 14's closing-note benchmark (a benchmark, never a test): in one run,
#   1. spottrain trains configs/resnet20.ini on Fashion-MNIST (1 rank, THREADS threads) for
#      EPOCHS epochs or MAX_STEPS steps: test accuracy per epoch (metrics.jsonl) and images/s;
#   2. PyTorch (scripts/torch_resnet_bench.py, the same network and recipe) does the same at
#      the same batch and threads;
#   3. spottrain bench of configs/resnet18.ini at model.input=R18_INPUT: images/s.
#
#   scripts/resnet_bench.sh [-e EPOCHS] [-m MAX_STEPS] [-t THREADS] [-d DATA_DIR] [-p PYTHON]
#                           [-i R18_INPUT] [-s R18_STEPS]
#
# Defaults: 3 epochs, no step limit, 2 threads, /usr/share/datasets/fashion-mnist,
# /work/venv-torch/bin/python, 1x28x28, 5 steps. Prints the per-epoch lines and a summary
# with the CPU model and ISA.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
epochs=3 max_steps=0 threads=2 data=/usr/share/datasets/fashion-mnist r18_input=1x28x28 r18_steps=5
py=/work/venv-torch/bin/python
[ -x "$py" ] || py=python3
while getopts "e:m:t:d:p:i:s:" o; do
  case $o in
    e) epochs=$OPTARG ;; m) max_steps=$OPTARG ;; t) threads=$OPTARG ;; d) data=$OPTARG ;;
    p) py=$OPTARG ;; i) r18_input=$OPTARG ;; s) r18_steps=$OPTARG ;;
    *) echo "usage: $0 [-e EPOCHS] [-m MAX_STEPS] [-t THREADS] [-d DATA_DIR] [-p PYTHON] [-i R18_INPUT] [-s R18_STEPS]" >&2; exit 64 ;;
  esac
done
st=${SPOTTRAIN:-$here/build/src/spottrain}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
limit=()
[ "$max_steps" -gt 0 ] && limit=(--max-steps "$max_steps")

echo "== spottrain resnet20, $epochs epochs${limit[*]:+ (${limit[*]})}, $threads threads"
"$st" train --config "$here/configs/resnet20.ini" --data-dir "$data" --run-dir "$out/run" \
  --epochs "$epochs" "${limit[@]}" --threads "$threads" --set checkpoint.every_steps=0 \
  >"$out/st.out" 2>"$out/st.err" || { tail -n 20 "$out/st.err"; exit 1; }
"$py" - "$out/run/metrics.jsonl" "$out/st.out" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    j = json.loads(l)
    if "test_accuracy" in j:
        print("spottrain step %5d  test accuracy %.4f" % (j.get("step", 0), j["test_accuracy"]))
j = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
print("spottrain final: steps %d  test accuracy %s  %.1f img/s" % (j["steps"], j.get("test_accuracy"), j["train_images_per_s"]))
PY

echo "== pytorch resnet20, same batch and threads"
"$py" "$here/scripts/torch_resnet_bench.py" --data-dir "$data" --epochs "$epochs" --max-steps "$max_steps" \
  --threads "$threads" | tee "$out/torch.out" | "$py" -c '
import json, sys
for l in sys.stdin:
    j = json.loads(l)
    print("pytorch   step %5d  test accuracy %.4f  %.1f img/s (torch %s)" % (j["step"], j["test_accuracy"], j["images_per_s"], j["torch"]))'

echo "== spottrain bench resnet18, model.input=$r18_input"
"$st" bench --config "$here/configs/resnet18.ini" --set "model.input=$r18_input" --threads "$threads" \
  --steps "$r18_steps" --warmup 1 2>/dev/null | tail -n 1 | "$py" -c '
import json, sys
j = json.load(sys.stdin)
print("spottrain resnet18 bench: %.1f img/s  %.1f GFLOP/s (%s)" % (j["images_per_s"], j["gflops"], j.get("kernels", "?")))'
isa=$(grep -o -w -E 'avx512f|avx2|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), flags: $isa, $(nproc) cores"
