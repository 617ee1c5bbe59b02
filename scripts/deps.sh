#!/usr/bin/env bash
# Installs the Debian packages spottrain needs, when any is missing.
# Sourced by quickstart.sh and test.sh; safe to run again.
set -euo pipefail

SPOTTRAIN_PACKAGES=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev
  libhdf5-dev hdf5-tools
  libcurl4-openssl-dev libssl-dev libopenblas-dev zlib1g-dev
  libinih-dev libcjson-dev libcmocka-dev libmicrohttpd-dev
  dataset-fashion-mnist
  python3 python3-h5py python3-numpy python3-pil
  gnuplot-nox shellcheck
  clang-14 libclang-rt-14-dev
  iproute2
)

# Only the test suite needs these (scripts/test.sh installs them): a real one-node
# SLURM for the batch script's tests (tests/slurm/), and nftables for the random
# packet loss of the network-namespace scenarios (tests/netns/). They are not for
# quickstart: on a machine with systemd, installing them also enables the munge service.
SPOTTRAIN_TEST_PACKAGES=(
  slurm-wlm munge
  nftables
)

# spottrain_install_deps [PACKAGE...]: apt-get installs those of the packages (default:
# SPOTTRAIN_PACKAGES) that are not installed yet; does nothing when all are.
spottrain_install_deps() {
  local missing=() want=("$@")
  [ "${#want[@]}" -gt 0 ] || want=("${SPOTTRAIN_PACKAGES[@]}")
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "spottrain: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Open MPI refuses to run as root unless told; containers and CI often run as root.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
