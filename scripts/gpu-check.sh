#!/usr/bin/env bash
# gpu-check.sh - build spottrain with its CUDA backend on a lent GPU machine and
# check it there: the gpu-labelled tests, `spottrain bench --device cuda` for
# configs/mnist_cnn.ini at global batch 128 and 1024, and a PyTorch reference of
# the same network (eager and torch.compile, scripts/torch_mnist_cnn_bench.py),
# ending with a side-by-side table.
#
#   scripts/gpu-check.sh --fetch-debs DIR
#       HERE (Debian 12 with apt): download the Debian packages spottrain builds
#       against (the -dev packages of scripts/deps.sh: Open MPI, HDF5, OpenBLAS,
#       curl, inih, cJSON, cmocka, zlib, ...; with mpirun, pkgconf and OpenSSL's
#       headers; runtime and dev) with their dependencies, less what the GPU
#       image has (C library, compilers, base system), into DIR (about 35 MB),
#       and the MNIST files of ../shared/data/mnist when present (12 MB).
#       Keep DIR git-ignored and carry it to the GPU machine.
#
#   scripts/gpu-check.sh [--debs DIR] [--build DIR] [--out DIR] [--steps N]
#                        [--arch SM] [--skip-tests] [--no-torch] [--no-compile]
#       ON THE GPU MACHINE (CUDA, nvcc, PyTorch, no package registry): unpack the
#       .deb files of DIR (default .debs) under $TMPDIR/spottrain-deps (never into
#       /), point LD_LIBRARY_PATH, pkg-config and CMake at them, build into DIR
#       (default build-gpu, CUDA architecture of the GPU found, e.g. 90), run
#       `ctest -L gpu`, the benchmarks, and print the table. Logs and the table
#       go to --out DIR (default $OUT when set, else BUILD/gpu-check).
#
# Example through the device tool: carry [".debs"], command
#   bash scripts/gpu-check.sh --debs .debs --out "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD

# What spottrain builds against: the -dev packages of scripts/deps.sh (so that a new
# dependency there travels too), mpirun, pkg-config, and OpenSSL's headers.
build_packages() {
  local p
  # shellcheck disable=SC1091 # (scripts/deps.sh: SPOTTRAIN_PACKAGES)
  . "$SRC/scripts/deps.sh"
  for p in "${SPOTTRAIN_PACKAGES[@]}"; do
    case "$p" in *-dev) echo "$p" ;; esac
  done
  printf '%s\n' openmpi-bin pkgconf libssl-dev
}
# Dependencies the GPU image has (C library, compilers, base system) or spottrain never
# loads (Fortran/C++ HDF5, X11 and OpenCL plugins of hwloc, dev packages of dependencies).
SKIP_RE='^(gcc-[0-9]+-base|libc6|libc6-dev|libc-dev-bin|linux-libc-dev|libgcc-s1|libstdc\+\+6|debianutils|tar|dpkg|debconf|perl|perl-base|perl-modules-.*|libperl.*|passwd|adduser|libpam.*|libsemanage.*|libsepol2|libaudit.*|libcap-ng0|libselinux1|libacl1|libcrypt1|libcrypt-dev|libdb5\.3|libgdbm.*|libbz2-1\.0|liblzma5|libmd0|libpcre2-8-0|libtinfo6|libedit2|libcbor0\.8|libfido2-1|libudev1|openssh-client|m4|autoconf|automake|autotools-dev|binutils.*|libbinutils|libctf.*|libgprofng0|libjansson4|libisl23|libmpfr6|libmpc3|cpp-[0-9]+|gcc-[0-9]+|gfortran-[0-9]+|libgcc-[0-9]+-dev|libgfortran-[0-9]+-dev|libcc1-0|libgomp1|libitm1|libatomic1|libasan[0-9]+|liblsan0|libtsan[0-9]+|libubsan1|libtirpc.*|libnsl.*|rpcsvc-proto|hdf5-helpers|libhdf5-fortran-.*|libhdf5-hl-fortran-.*|libhdf5-cpp-.*|libhdf5-hl-cpp-.*|libjpeg.*|libaec-dev|libevent-dev|libhwloc-dev|libnuma-dev|libltdl-dev|libnl-3-dev|libnl-route-3-dev|libibverbs-dev|libpmix-dev|libhwloc-plugins|libx11-.*|libxau6|libxdmcp6|libxcb1|libxext6|libxnvctrl0|ocl-icd-libopencl1|libicu[0-9]+|libxml2|libjs-jquery.*|libpciaccess0)$'

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 64
}

# ---------------------------------------------------------------- --fetch-debs (here)

fetch_debs() {
  local dir=$1 status list
  local BUILD_PACKAGES=()
  mapfile -t BUILD_PACKAGES < <(build_packages | sort -u)
  command -v apt-get >/dev/null || { echo "gpu-check: --fetch-debs needs apt-get (Debian/Ubuntu)" >&2; exit 69; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  status=$(mktemp)
  list=$(mktemp)
  # the packages apt would install on an empty system (first alternatives, no recommends)
  simulate() {
    apt-get -s -o Dir::State::status="$status" -o APT::Install-Recommends=false \
      install "${BUILD_PACKAGES[@]}" 2>/dev/null | awk '/^Inst /{print $2}' | grep -Ev "$SKIP_RE" >"$list" || true
  }
  simulate
  if [ ! -s "$list" ]; then
    echo "gpu-check: apt knows none of the packages; running apt-get update" >&2
    apt-get update -q >&2
    simulate
  fi
  rm -f "$status"
  [ -s "$list" ] || { echo "gpu-check: could not resolve ${BUILD_PACKAGES[*]}" >&2; exit 69; }
  local pkgs=()
  mapfile -t pkgs <"$list"
  rm -f "$list"
  rm -f "$dir"/*.deb
  (cd "$dir" && apt-get -q -o APT::Sandbox::User=root download "${pkgs[@]}" >&2)
  printf '%s\n' "${pkgs[@]}" >"$dir/PACKAGES"
  local mnist=${MNIST_DIR:-$SRC/../shared/data/mnist}
  if [ -e "$mnist/train-images-idx3-ubyte.gz" ]; then
    mkdir -p "$dir/mnist"
    cp "$mnist"/*-ubyte.gz "$dir/mnist/"
  fi
  echo "gpu-check: ${#pkgs[@]} packages in $dir ($(du -sh "$dir" | cut -f1)); carry it to the GPU machine" >&2
}

# ---------------------------------------------------------------- on the GPU machine

DEPS=""
# Unpack every .deb under $DEPS and point the loader, pkg-config and Open MPI there.
unpack_debs() {
  local debs=$1 f n=0
  DEPS=${TMPDIR:-/tmp}/spottrain-deps
  rm -rf "$DEPS"
  mkdir -p "$DEPS"
  for f in "$debs"/*.deb; do
    [ -e "$f" ] || continue
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$f" "$DEPS"
    else # ar + tar: the data member may be .xz, .zst or .gz
      local tmp member
      tmp=$(mktemp -d)
      (cd "$tmp" && ar x "$f")
      member=$(find "$tmp" -name 'data.tar*' | head -n 1)
      tar -xf "$member" -C "$DEPS"
      rm -rf "$tmp"
    fi
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || { echo "gpu-check: no .deb files in $debs (make them here with --fetch-debs $debs)" >&2; exit 66; }
  local a=$DEPS/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH="$a:$a/openmpi/lib:$a/hdf5/serial:$a/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # only our .pc files, their paths prefixed with $DEPS
  export PKG_CONFIG_LIBDIR="$a/pkgconfig:$a/openblas-pthread/pkgconfig:$DEPS/usr/share/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR=$DEPS
  # Open MPI and PMIx relocated from /usr (components, help files, orted)
  local p=$a/pmix2
  export OPAL_PREFIX=$DEPS/usr PMIX_PREFIX=$p PMIX_DATADIR=$p/share PMIX_PKGDATADIR=$p/share/pmix \
    PMIX_LIBDIR=$p/lib PMIX_PKGLIBDIR=$p/lib/pmix
  mkdir -p "$DEPS/bin"
  ln -sf "$DEPS/usr/bin/mpirun.openmpi" "$DEPS/bin/mpirun"
  export PATH="$DEPS/bin:$PATH"
  echo "gpu-check: $n packages unpacked under $DEPS" >&2
}

# NCCL and cuBLAS: in the CUDA toolkit, else in PyTorch's nvidia-* wheels.
NCCL_ROOT=""
find_nccl() {
  local d
  for d in /usr/local/cuda /usr/local/cuda/targets/x86_64-linux /usr; do
    if [ -e "$d/include/nccl.h" ] && compgen -G "$d/lib*/libnccl.so*" >/dev/null; then NCCL_ROOT=$d; return; fi
  done
  d=$(env -u LD_LIBRARY_PATH python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null || true)
  if [ -n "$d" ] && [ -e "$d/include/nccl.h" ]; then
    NCCL_ROOT=$d
    export LD_LIBRARY_PATH="$d/lib:$LD_LIBRARY_PATH"
  fi
}

# cuBLAS is loaded at run time (dlopen): from the toolkit, else from PyTorch's nvidia-* wheel.
find_cublas() {
  local tk d
  tk=$(dirname "$(dirname "$(command -v nvcc)")")
  if compgen -G "$tk/lib*/libcublas.so.*" >/dev/null || compgen -G "$tk/targets/x86_64-linux/lib/libcublas.so.*" >/dev/null; then
    return
  fi
  d=$(env -u LD_LIBRARY_PATH python3 -c 'import nvidia, glob, os
for p in nvidia.__path__:
    for f in glob.glob(os.path.join(p, "*", "lib", "libcublas.so.*")):
        print(os.path.dirname(f)); raise SystemExit' 2>/dev/null || true)
  if [ -n "$d" ]; then
    export LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"
    echo "gpu-check: cuBLAS from $d" >&2
  fi
}

gpu_arch() {
  local cc
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .' || true)
  case "$cc" in
    [0-9][0-9] | [0-9][0-9][0-9]) echo "$cc" ;;
    *) echo 90 ;;
  esac
}

check() {
  local debs=$1 build=$2 out=$3 steps=$4 arch=$5 tests=$6 torch=$7 compile=$8
  mkdir -p "$out"
  local log_build=$out/build.log log_test=$out/ctest.log log_bench=$out/bench.log log_torch=$out/torch.log
  local summary=$out/summary.txt
  : >"$log_bench"
  {
    echo "== machine"
    nvidia-smi -L || true
    nvcc --version | tail -n 2
    echo "cmake $(cmake --version | head -n 1 | awk '{print $3}'), $(nproc) cores"
  } | tee "$summary"

  unpack_debs "$debs"
  find_nccl
  [ -n "$NCCL_ROOT" ] || echo "gpu-check: NCCL not found in the toolkit or a wheel; CMake will say so" >&2
  [ -n "$arch" ] || arch=$(gpu_arch)
  find_cublas
  local a=$DEPS/usr/lib/x86_64-linux-gnu
  echo "== configure and build into $build (CUDA architecture $arch)" | tee -a "$summary"
  local t0=$SECONDS rc=0
  {
    cmake -S "$SRC" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSPOTTRAIN_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" ${NCCL_ROOT:+-DNCCL_ROOT="$NCCL_ROOT"} \
      -DCMAKE_PREFIX_PATH="$DEPS/usr" -DPKG_CONFIG_EXECUTABLE="$DEPS/usr/bin/pkgconf" \
      -DMPI_SKIP_COMPILER_WRAPPER=ON -DMPI_C_HEADER_DIR="$a/openmpi/include" \
      -DMPI_C_LIB_NAMES=mpi -DMPI_mpi_LIBRARY="$a/openmpi/lib/libmpi.so" \
      -DHDF5_C_INCLUDE_DIR="$DEPS/usr/include/hdf5/serial" \
      -DOPENSSL_ROOT_DIR="$DEPS/usr" -DOPENSSL_INCLUDE_DIR="$DEPS/usr/include" \
      -DOPENSSL_CRYPTO_LIBRARY="$a/libcrypto.so" -DOPENSSL_SSL_LIBRARY="$a/libssl.so" \
      -DCMAKE_C_FLAGS="-isystem $DEPS/usr/include/x86_64-linux-gnu" \
      -DSPOTTRAIN_MNIST_DIR="$(cd "$debs" && pwd)/mnist" &&
      cmake --build "$build" -j "$(nproc)" --target spottrain &&
      { cmake --build "$build" -j "$(nproc)" --target test_gpu_ops ||
        echo "gpu-check: no test_gpu_ops target (tests/CMakeLists.txt lacks add_subdirectory(gpu)?)"; }
  } >"$log_build" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log_build" >&2
    echo "gpu-check: the build failed (exit $rc); log in $log_build" | tee -a "$summary" >&2
    return 1
  fi
  echo "built in $((SECONDS - t0)) s" | tee -a "$summary"
  local st=$build/src/spottrain
  { ldd "$st" | grep -E 'libmpi|hdf5|openblas' || true; } | sed 's/^/  /' | tee -a "$summary"

  if [ "$tests" = 1 ]; then
    echo "== ctest -L gpu" | tee -a "$summary"
    t0=$SECONDS
    (cd "$build" && ctest -L gpu --output-on-failure --timeout 1200) >"$log_test" 2>&1 || true
    { grep -E 'tests passed|tests failed|Passed|Failed|Skipped|Not Run|\*\*\*' "$log_test" || true; } | tail -n 12 | tee -a "$summary"
    echo "tests took $((SECONDS - t0)) s" | tee -a "$summary"
  fi

  echo "== spottrain bench --device cuda (mnist_cnn, $steps steps)" | tee -a "$summary"
  local b
  for b in 128 1024; do
    echo "--- batch $b" >>"$log_bench"
    "$st" bench --config "$SRC/configs/mnist_cnn.ini" --device cuda --set train.global_batch="$b" \
      --steps "$steps" --warmup 20 >>"$log_bench" 2>&1 || echo "bench at batch $b failed" | tee -a "$summary"
  done

  : >"$log_torch"
  if [ "$torch" = 1 ]; then
    echo "== PyTorch reference" | tee -a "$summary"
    local modes=(eager)
    [ "$compile" = 1 ] && modes+=(compile)
    env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 timeout 300 python3 "$SRC/scripts/torch_mnist_cnn_bench.py" \
      --batch 128 1024 --steps "$steps" --modes "${modes[@]}" >"$log_torch" 2>&1 || echo "torch reference exited $?" | tee -a "$summary"
    env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 timeout 120 python3 "$SRC/scripts/torch_mnist_cnn_bench.py" \
      --batch 128 1024 --steps "$steps" --modes eager --sync-loss >>"$log_torch" 2>&1 || true
  fi

  env -u LD_LIBRARY_PATH python3 - "$log_bench" "$log_torch" <<'PY' | tee -a "$summary"
import json, sys
rows = []
def objs(path):
    for line in open(path, errors="replace"):
        line = line.strip()
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                pass
for o in objs(sys.argv[1]):
    rows.append(("spottrain " + o.get("backend", "?"), o.get("global_batch"), o.get("images_per_s"), o.get("step_ms"),
                 o.get("forward_ms"), o.get("backward_ms"), o.get("allreduce_ms"), o.get("optimizer_ms"),
                 o.get("gflops", 0) / 1e3, o.get("fraction_of_sgemm"), o.get("sgemm_gflops")))
for o in objs(sys.argv[2]):
    name = o.get("impl", "?") + (" +item" if o.get("sync_loss") else "")
    if "error" in o:
        print(f"{name} batch {o.get('batch')}: {o['error']}")
        continue
    rows.append((name, o.get("batch"), o.get("images_per_s"), o.get("step_ms"), None, None, None, None,
                 o.get("tflops"), None, None))
def f(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) else "-"
sg = next((r[10] for r in rows if r[10]), None)
print(f"{'implementation':22} {'batch':>5} {'images/s':>10} {'step ms':>8} {'fwd':>7} {'bwd':>7} {'allred':>7} {'optim':>7} {'TFLOP/s':>8} {'of sgemm':>8}")
for r in sorted(rows, key=lambda r: (r[1] or 0, r[0])):
    frac = r[9] if r[9] is not None else (r[8] * 1e3 / sg if sg and r[8] else None)
    print(f"{r[0]:22} {f(r[1], 'd'):>5} {f(r[2], '.0f'):>10} {f(r[3], '.3f'):>8} {f(r[4], '.3f'):>7} {f(r[5], '.3f'):>7} "
          f"{f(r[6], '.3f'):>7} {f(r[7], '.3f'):>7} {f(r[8], '.2f'):>8} {f(frac * 100 if frac else None, '.1f'):>7}%")
if sg:
    print(f"(cuBLAS FP32 sgemm 8192^3 in the same run: {sg / 1e3:.1f} TFLOP/s; FLOPs per image counted as model.c does)")
PY
  echo "gpu-check: logs in $out" >&2
}

# ---------------------------------------------------------------- arguments

debs=.debs build=build-gpu out=${OUT:-} steps=200 arch="" tests=1 torch=1 compile=1
while [ $# -gt 0 ]; do
  case "$1" in
    --fetch-debs) [ $# -ge 2 ] || usage; fetch_debs "$2"; exit 0 ;;
    --debs) [ $# -ge 2 ] || usage; debs=$2; shift ;;
    --build) [ $# -ge 2 ] || usage; build=$2; shift ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift ;;
    --steps) [ $# -ge 2 ] || usage; steps=$2; shift ;;
    --arch) [ $# -ge 2 ] || usage; arch=$2; shift ;;
    --skip-tests) tests=0 ;;
    --no-torch) torch=0 ;;
    --no-compile) compile=0 ;;
    -h | --help) usage ;;
    *) echo "gpu-check: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
[ -n "$out" ] || out=$build/gpu-check
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
command -v nvcc >/dev/null || { echo "gpu-check: no nvcc: this is for a machine with the CUDA toolkit" >&2; exit 69; }
check "$debs" "$build" "$out" "$steps" "$arch" "$tests" "$torch" "$compile"
