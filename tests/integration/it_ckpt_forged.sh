#!/usr/bin/env bash
# Issue 18: a checkpoint forged behind a valid seal (tests/fuzz/findings/ckpt/
# hdf5_shared_message_segv's class: a dataset's datatype message marked shared in a file without
# a shared-message table, sealed again) made HDF5 1.10.8 crash inside H5Dopen2, and with it every
# reader. Now each checkpoint read by HDF5 runs in a child process first (src/ckpt_guard.c):
#  - spottrain inspect, eval --ckpt, train --init-from: exit 65 naming the file, no crash;
#  - resume, with such a file as the newest checkpoint: skipped like any damaged checkpoint,
#    the run goes on from the one before;
#  - the fuzz finding itself (its seal stamped again, as fuzz_ckpt does): inspect exits 65.
# A crash of the worker would show as an exit code above 128 (or ASan's report).
. "$(dirname "$0")/common.sh"
ckpt_run_20
"$PYTHON" "$TESTS_DIR/integration/ckpt_forge_shared.py" "$newest" || fail "could not forge the checkpoint"

crashed="ckpt-00000020.h5: HDF5 (crashed \\(signal|failed \\(the reader ended with)"
# inspect says why on stdout (valid: no: ...)
expect_out() { grep -Eq -- "$1" "$WORK/last.out" || { cat "$WORK/last.out" "$WORK/last.err"; fail "stdout lacks /$1/"; }; }
expect_exit 65 "$SPOTTRAIN" inspect "$newest"
expect_out "valid: no: checkpoint .*$crashed"
# eval, --init-from: 65; resume: the forged newest file is skipped, the run continues from step 10
refused_then_resumed "$crashed" "$crashed" "skipping checkpoint .*$crashed"

# the fuzz finding: its flag byte off, the seal stamped again over its bytes as fuzz_ckpt does
"$PYTHON" - "$TESTS_DIR/fuzz/findings/ckpt/hdf5_shared_message_segv" "$WORK/finding.h5" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()[1:]
body, seal = data[:-48], data[-48:]
step, flags = struct.unpack("<qI", seal[24:36])
new = bytearray(b"spottrain-seal1\n" + struct.pack("<QqIII", len(data), step, flags & 1, 0, zlib.crc32(body)))
new += struct.pack("<I", zlib.crc32(bytes(new)))
open(sys.argv[2], "wb").write(body + bytes(new))
PY
expect_exit 65 "$SPOTTRAIN" inspect "$WORK/finding.h5"
expect_out "finding.h5: HDF5 (crashed \\(signal|failed \\(the reader ended with)"
echo "it_ckpt_forged: all checks passed"
