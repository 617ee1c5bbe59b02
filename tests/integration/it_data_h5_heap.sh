#!/usr/bin/env bash
# Issue 18: an HDF5 image set whose images carry the attribute layout as a variable-length
# string (h5py's default for a str) over a damaged global heap made spottrain hang for good
# at load (HDF5 1.10.8 loops in H5Aread). Now such an attribute is refused from its type,
# before HDF5 reads its value: exit 65 naming the file and the attribute, and saying how to
# write it. Each run is bounded by `timeout` (a hang is exit 124, not a stuck test):
#  - the fuzz finding itself (tests/fuzz/corpus/h5images/, without its mode byte);
#  - an intact file written by h5py with attrs["layout"] = "NCHW" (same refusal, same hint);
#  - that file with the attribute rewritten as the message says: it trains;
#  - the image sets on which HDF5 itself crashes (fuzz findings): exit 65 naming the file,
#    loaded whole and streamed (data.stream = true).
. "$(dirname "$0")/common.sh"
cfg="$TESTS_DIR/integration/colour.ini"
train() { expect_exit "$1" timeout 120 "$SPOTTRAIN" train --config "$cfg" --data-dir "$2" --run-dir "$WORK/run-$3" \
  --threads 1 --max-steps 2 --set train.global_batch=4; }

mkdir -p "$WORK/finding"
tail -c +2 "$TESTS_DIR/fuzz/corpus/h5images/finding-vlen-layout-heap-hang" >"$WORK/finding/set.h5"
train 65 "$WORK/finding" finding
expect_err "finding/set.h5: dataset /(train|test)/images: attribute layout is a variable-length string"
expect_err "attrs.create\('layout', np.bytes_\('NCHW'\)\)"

mkdir -p "$WORK/vlen"
"$PYTHON" - "$WORK/vlen/set.h5" <<'PY'
import sys
import h5py
import numpy as np
rng = np.random.default_rng(3)
with h5py.File(sys.argv[1], "w") as f:
    for g, n in (("train", 8), ("test", 4)):
        d = f.create_dataset(g + "/images", data=rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8))
        d.attrs["layout"] = "NCHW"     # h5py: a variable-length UTF-8 string
        f.create_dataset(g + "/labels", data=np.arange(n, dtype=np.uint8) % 6)
PY
train 65 "$WORK/vlen" vlen
expect_err "vlen/set.h5: dataset /train/images: attribute layout is a variable-length string"

"$PYTHON" - "$WORK/vlen/set.h5" <<'PY'
import sys
import h5py
import numpy as np
with h5py.File(sys.argv[1], "a") as f:
    for g in ("train", "test"):
        f[g + "/images"].attrs.create("layout", np.bytes_("NCHW"))   # as the message says
PY
train 0 "$WORK/vlen" fixed

# HDF5 1.10.8's own crashes on damaged image sets (tests/fuzz/findings/h5images: a NULL read
# in a symbol table lookup, an over-read in H5Dread, ...): the set is read in a child process
# (src/data_guard.c), so each is exit 65 naming the file, never a crash of the worker. Those
# that crash HDF5 say so (signal, or a sanitizer's exit in the ASan build).
for f in "$TESTS_DIR"/fuzz/findings/h5images/hdf5_*; do
  n=$(basename "$f")
  mkdir -p "$WORK/$n"
  tail -c +2 "$f" >"$WORK/$n/set.h5"
  train 65 "$WORK/$n" "$n"
  grep -q "$n" "$WORK/last.err" || { cat "$WORK/last.err"; fail "$n: the message does not name the file"; }
done
for n in hdf5_local_heap_segv hdf5_select_read_overflow; do
  train 65 "$WORK/$n" "again-$n"
  expect_err "$n/set.h5: reading the train split (crashed \\(signal|failed \\(the reader ended with)"
done
# The same sets streamed (data.stream = true, src/data_stream.c): the probe that decides to
# stream and the reader that owns the HDF5 handles are child processes too, so each is exit 65
# naming the file. The network takes the findings' 4x3x4 images, so a set that opens is read
# by the stream as far as it goes.
cat >"$WORK/small.ini" <<'INI'
[model]
input = 4x3x4

[layer.flatten]
type = flatten

[layer.fc1]
type = dense
units = 10

[layer.loss]
type = softmax_xent
INI
for f in "$TESTS_DIR"/fuzz/findings/h5images/hdf5_*; do
  n=$(basename "$f")
  expect_exit 65 timeout 120 "$SPOTTRAIN" train --config "$WORK/small.ini" --data-dir "$WORK/$n" \
    --run-dir "$WORK/run-stream-$n" --threads 1 --max-steps 2 --set train.global_batch=4 \
    --set data.stream=true --set data.cache_mb=1
  grep -q "$n/set.h5" "$WORK/last.err" || { cat "$WORK/last.err"; fail "$n streamed: the message does not name the file"; }
done
echo "it_data_h5_heap: all checks passed"
