#!/usr/bin/env bash
# run.sh - the GPU tests of tests/gpu on a machine WITHOUT a GPU, against the
# GPU backend's own code compiled for the host: cuda/backend.c and cuda/nccl.c
# unchanged, cuda/ops.cu with each kernel launch turned into a loop over the
# grid's threads (kernels_to_host.py, emu.h), the CUDA runtime faked in host
# memory (fake_cuda.cpp), cuBLAS computed by OpenBLAS with cuBLAS's
# column-major semantics (fake_cublas.cpp, dlopen'ed as libcublas.so.N) and an
# NCCL that refuses to start (fake_nccl.cpp), as for two ranks on one GPU.
#
# What it checks: the indexing of every kernel, the cuBLAS argument mapping,
# staging, the backend's memory/copy discipline, dist's device-buffer paths and
# the whole training flow with --device cuda, against the CPU backend (the same
# tests as on a GPU). What it cannot: anything of real hardware (memory model,
# warp scheduling, real cuBLAS/NCCL, performance).
#
#   tests/gpu/emu/run.sh [BUILD] [--quick]
#       BUILD: a CUDA build of spottrain (default build-cuda); the emulated
#       binaries go to BUILD/gpu-emu. --quick: test_gpu_ops only (~20 s);
#       otherwise also gpu_train.sh (~3 min on 2 cores) and gpu_world2.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../../.." && pwd)
build=build-cuda quick=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    -*) echo "usage: $0 [BUILD] [--quick]" >&2; exit 64 ;;
    *) build=$a ;;
  esac
done
build=$(cd "$build" 2>/dev/null && pwd) || { echo "gpu-emu: no build directory $build" >&2; exit 66; }
core=$build/src/libspottrain_core.a main_o=$build/src/CMakeFiles/spottrain.dir/main.c.o
link_txt=$build/src/CMakeFiles/spottrain.dir/link.txt
if [ ! -e "$core" ] || [ ! -e "$main_o" ] || [ ! -e "$link_txt" ]; then
  echo "gpu-emu: build spottrain in $build first (a CUDA build: -DSPOTTRAIN_CUDA=ON)" >&2
  exit 66
fi
grep -q 'SPOTTRAIN_HAVE_CUDA:INTERNAL\|spottrain_cuda' "$link_txt" ||
  { echo "gpu-emu: $build is not a CUDA build" >&2; exit 66; }
cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt" | head -n 1; }
nvcc=$(sed -n 's/^set(CMAKE_CUDA_COMPILER "\(.*\)")$/\1/p' "$build"/CMakeFiles/*/CMakeCUDACompiler.cmake 2>/dev/null | head -n 1)
[ -n "$nvcc" ] || nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
cuda_inc=$(dirname "$(dirname "$nvcc")")/include
nccl_inc=$(cache NCCL_INCLUDE_DIR)
cuda_major=$("$nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')

out=$build/gpu-emu
mkdir -p "$out/lib"
cd "$out"
inc=(-I"$SRC/src" -I"$SRC/src/common" -I"$SRC/cuda" -I"$cuda_inc" -I"$nccl_inc" -I"$HERE")
# the names the backend dlopen()s: ours, found through LD_LIBRARY_PATH
cat >defs.h <<EOF
#define SPOTTRAIN_CUBLAS_SONAME "libcublas.so.$cuda_major"
#define SPOTTRAIN_CUDA_LIBDIR "/nonexistent"
#define SPOTTRAIN_NCCL_LIB "/nonexistent/libnccl.so.2"
#define SPOTTRAIN_NCCL_DIR "/nonexistent"
EOF
cflags=(-std=c11 -O2 -Wall -Wextra -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -DSPOTTRAIN_HAVE_CUDA=1)
# -ffp-contract=off: the host compiler must not fuse a*b+c either (nvcc --fmad=false)
cxxflags=(-std=c++20 -O2 -ffp-contract=off -w)
echo "gpu-emu: building into $out" >&2
python3 "$HERE/kernels_to_host.py" "$SRC/cuda/ops.cu" >ops_host.cpp
g++ "${cxxflags[@]}" "${inc[@]}" -c ops_host.cpp -o ops_host.o
g++ "${cxxflags[@]}" "${inc[@]}" -c "$HERE/fake_cuda.cpp" -o fake_cuda.o
cc "${cflags[@]}" "${inc[@]}" -include defs.h -c "$SRC/cuda/backend.c" -o backend.o
cc "${cflags[@]}" "${inc[@]}" -include defs.h -c "$SRC/cuda/nccl.c" -o nccl.o
cc "${cflags[@]}" "${inc[@]}" -c "$SRC/tests/gpu/test_gpu_ops.c" -o test_gpu_ops.o
read -r -a blas_cflags <<<"$(pkg-config --cflags openblas)"
read -r -a blas_libs <<<"$(pkg-config --libs openblas)"
g++ "${cxxflags[@]}" -fPIC -shared "${inc[@]}" "${blas_cflags[@]}" "$HERE/fake_cublas.cpp" -o "lib/libcublas.so.$cuda_major" "${blas_libs[@]}"
g++ "${cxxflags[@]}" -fPIC -shared "${inc[@]}" "$HERE/fake_nccl.cpp" -o lib/libnccl.so.2

# spottrain's own link line, less the CUDA library and runtime (ours instead)
read -r -a words <<<"$(cat "$link_txt")"
libs=()
seen_o=0
for w in "${words[@]}"; do
  if [ "$seen_o" = 0 ]; then [ "$w" = -o ] && seen_o=1; continue; fi
  case "$w" in
    spottrain | *libspottrain_cuda.a | *libspottrain_core.a | *cudart_static.a) ;;
    -*) libs+=("$w") ;;
    /*) libs+=("$w") ;;
    *) libs+=("$build/src/$w") ;; # CMake writes the link line relative to build/src
  esac
done
group=("-Wl,--start-group" "$core" ops_host.o backend.o nccl.o fake_cuda.o "-Wl,--end-group")
g++ -o spottrain "$main_o" "${group[@]}" "${libs[@]}" -pthread
g++ -o test_gpu_ops test_gpu_ops.o "${group[@]}" "${libs[@]}" -lcmocka -pthread

export LD_LIBRARY_PATH="$out/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "== test_gpu_ops (emulated GPU)" >&2
./test_gpu_ops
[ "$quick" = 1 ] && exit 0
export SPOTTRAIN=$out/spottrain GPU_PROBE=$out/test_gpu_ops CONFIGS=$SRC/configs TESTS_DIR=$SRC/tests
export MNIST_DIR=${MNIST_DIR:-$(cache SPOTTRAIN_MNIST_DIR)} FASHION_DIR=${FASHION_DIR:-$(cache SPOTTRAIN_FASHION_DIR)}
rc=0
for t in gpu_train gpu_world2; do
  echo "== $t.sh (emulated GPU)" >&2
  bash "$SRC/tests/gpu/$t.sh" || { echo "gpu-emu: $t.sh failed" >&2; rc=1; }
done
exit "$rc"
