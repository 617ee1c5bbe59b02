#!/usr/bin/env bash
# run_bounded.sh TARGET CORPUS WORKDIR RUNS - one bounded libFuzzer run (the CI test fuzz.<name>):
# the corpus is read, never written (new inputs go to WORKDIR/new); a crash, leak, sanitizer
# report or timeout fails the test and leaves the input in WORKDIR/ (add it to the corpus
# once fixed). The seed is fixed, so a CI failure is reproducible.
set -euo pipefail
target=$1 corpus=$2 work=$3 runs=$4
rm -rf "$work"
mkdir -p "$work/new"
here=$(dirname "$0")
export LSAN_OPTIONS=suppressions=$here/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}
# A small ASan quarantine (default 256 MiB): each leak check libFuzzer runs scans it all, and the
# HDF5 targets' speed depends on it (fuzz_hdf5.h). The caller's ASAN_OPTIONS come after, and win.
export ASAN_OPTIONS=quarantine_size_mb=16${ASAN_OPTIONS:+:$ASAN_OPTIONS}
exec "$target" -seed=1 -runs="$runs" -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
  -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$work/" "$work/new" "$corpus"
