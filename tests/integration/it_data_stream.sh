#!/usr/bin/env bash
# A data set larger than memory (issue 15): the HDF5 colour set (300 training
# images) streamed through a cache of a few chunks (data.cache_mb = 0.15: 3 of
# the 19 gzip chunks of 16 images), so blocks are evicted and read again.
#  - with augmentation, W = 1 and W = 2 (with data.prefetch), 30 steps across
#    epoch ends: the final parameters and optimizer state are bit-identical to
#    the same run with the set in memory, and so is a run stopped in memory
#    at W = 2 and resumed streamed at W = 1;
#  - the contiguous NHWC set streams when its pixels exceed data.cache_mb
#    (no data.stream), plain gather, W = 2: bit-identical too;
#  - the log shows the cache stayed within its bound and evicted;
#  - eval on the streamed test split prints the same JSON as in memory;
#  - start-up removes a node-shared copy left in /dev/shm by a crashed one;
#  - a damaged chunk met mid-run ends the run with 65 naming file, dataset and
#    image (W = 2 with prefetch: no hang); a cache too small for one chunk is 64.
. "$(dirname "$0")/common.sh"
cfg="$TESTS_DIR/integration/colour.ini"
"$PYTHON" "$TESTS_DIR/integration/make_colour_data.py" "$WORK/data" --train 300 --test 60
aug=(--set data.crop_pad=4 --set data.pad_mode=reflect --set data.flip=true --set data.cutout=8
     --set data.mean=0.45,0.45,0.45 --set data.std=0.25,0.25,0.25)
stream=(--set data.stream=true --set data.cache_mb=0.15)
run() { # name ranks data-subdir [extra args]
  local name=$1 np=$2 d=$3; shift 3
  run_mpi "$np" "$SPOTTRAIN" train --config "$cfg" --data-dir "$WORK/data/$d" --run-dir "$WORK/$name" \
    --threads 1 --max-steps 30 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" \
    || { cat "$WORK/$name.err"; fail "run $name (W=$np) failed"; }
  [ "$(last_json "$WORK/$name.out" steps)" = "30" ] || fail "run $name did not reach step 30"
}
same() { "$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/$1/final.h5" "$WORK/$2/final.h5" --bitwise --optim; }
streamed() { # name: it streamed, evicted, and never held more than the bound
  grep -q "the training set (300 images.*streams from the file" "$WORK/$1.err" || fail "run $1 did not stream"
  "$PYTHON" - "$WORK/$1.err" <<'PY' || fail "run $1: the stream's cache figures are wrong"
import re, sys
m = re.search(r"data stream \(training set\): (\d+) blocks read .* (\d+) evictions .* cache at most ([0-9.]+) of ([0-9.]+) MB",
              open(sys.argv[1]).read())
assert m, "no data stream line"
reads, evictions, held, cap = int(m[1]), int(m[2]), float(m[3]), float(m[4])
assert evictions > 0 and reads > 19 and 0 < held <= cap, m[0]
PY
}

run mem 1 h5nchw "${aug[@]}"
run st1 1 h5nchw "${aug[@]}" "${stream[@]}"
run st2 2 h5nchw "${aug[@]}" "${stream[@]}" --set data.prefetch=true
streamed st1
streamed st2
grep -Eq "data.prefetch: [1-9][0-9]* shard fills served from the prefetch" "$WORK/st2.err" \
  || { cat "$WORK/st2.err"; fail "data.prefetch served nothing from the stream"; }
same mem st1 || fail "streamed W=1 differs from the set in memory"
same mem st2 || fail "streamed W=2 with prefetch differs from the set in memory at W=1"
# stopped in memory at W = 2 (step 12), resumed streamed at W = 1
run_mpi 2 "$SPOTTRAIN" train --config "$cfg" --data-dir "$WORK/data/h5nchw" --run-dir "$WORK/resumed" --threads 1 \
  --max-steps 12 "${aug[@]}" >"$WORK/resumed12.out" 2>"$WORK/resumed12.err" || { cat "$WORK/resumed12.err"; fail "resumed: first part failed"; }
run resumed 1 h5nchw "${aug[@]}" "${stream[@]}"
grep -q "resuming from .*ckpt-00000012.h5" "$WORK/resumed.err" || fail "the streamed run did not resume at step 12"
same mem resumed || fail "a run stopped in memory at W=2 and resumed streamed at W=1 differs"

run plain 1 h5nhwc
# a node-shared copy left in /dev/shm by a start-up that crashed (its creator is gone)
true & dead=$!; wait "$dead"
stale="/dev/shm/spottrain-p$dead-it$$-n0-test"
: >"$stale"
run plainst 2 h5nhwc --set data.cache_mb=0.2 # the test split (0.18 MB) is loaded and shared
streamed plainst
[ ! -e "$stale" ] || { rm -f "$stale"; fail "the stale shared-memory object of a gone process was left"; }
# Logged by this run's sweep, unless a sweep of another job on this machine (another test
# running beside this one) removed it first: the object is gone either way (checked above).
if ! grep -q "spottrain-p$dead-it$$-n0-test: removed the shared data copy left by process $dead" "$WORK/plainst.err"; then
  echo "it_data_stream: the stale object was removed by another sweep on this machine"
fi
same plain plainst || fail "the contiguous set streamed by data.cache_mb differs from it in memory"
if same mem plain >/dev/null 2>&1; then fail "augmented and plain runs agree: the comparison sees nothing"; fi

# data.mean = auto, data.std = auto: the training split's figures, the same bits in memory at
# W = 1 and streamed at W = 2; training uses exactly the logged values, the checkpoint keeps them
auto=(--set data.mean=auto --set data.std=auto --set data.flip=true)
run auto1 1 h5nchw "${auto[@]}"
run auto2 2 h5nchw "${auto[@]}" "${stream[@]}"
same auto1 auto2 || fail "data.mean/std = auto: streamed W=2 differs from W=1 in memory"
line=$(grep -o "data.mean = [0-9.,]*, data.std = [0-9.,]* (auto" "$WORK/auto1.err") || fail "auto values not logged"
m=$(echo "$line" | sed -E 's/data.mean = ([0-9.,]*), .*/\1/'); s=$(echo "$line" | sed -E 's/.*data.std = ([0-9.,]*) .*/\1/')
run given 1 h5nchw --set data.mean="$m" --set data.std="$s" --set data.flip=true
same auto1 given || fail "the run with the logged auto values differs from the auto run"
"$PYTHON" - "$WORK/auto1/final.h5" "$m" "$s" <<'PY' || fail "the checkpoint's config lacks the resolved data.mean/std"
import sys, h5py
text = h5py.File(sys.argv[1], "r").attrs["config"]
text = text.decode() if isinstance(text, bytes) else text
assert "mean = %s\n" % sys.argv[2] in text and "std = %s\n" % sys.argv[3] in text, text
PY

ev() { # name run data-subdir [extra]
  local name=$1 from=$2 d=$3; shift 3
  "$SPOTTRAIN" eval --ckpt "$WORK/$from/final.h5" --data-dir "$WORK/data/$d" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" \
    || { cat "$WORK/$name.err"; fail "eval $name failed"; }
  tail -n 1 "$WORK/$name.out" | "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); d.pop('ckpt', None); print(json.dumps(d, sort_keys=True))" >"$WORK/$name.json"
}
ev evmem mem h5nchw
ev evst mem h5nchw --set data.stream=true --set data.cache_mb=0.1
grep -q "the test set (60 images.*streams from the file" "$WORK/evst.err" || fail "eval did not stream the test set"
cmp -s "$WORK/evmem.json" "$WORK/evst.json" || { cat "$WORK/evmem.json" "$WORK/evst.json"; fail "eval of the streamed test set differs"; }
# eval --config with data.mean/std = auto takes the values the checkpoint's training resolved
ev evauto auto1 h5nchw
ev evautocfg auto1 h5nchw --config "$cfg" --set data.mean=auto --set data.std=auto
cmp -s "$WORK/evauto.json" "$WORK/evautocfg.json" || { cat "$WORK/evauto.json" "$WORK/evautocfg.json"; fail "eval --config with auto differs"; }

# a damaged chunk (images 160..175 of the training set): found mid-run, 65, named
cp "$WORK/data/h5nchw/set.h5" "$WORK/damaged.h5"
"$PYTHON" - "$WORK/damaged.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    info = f["train/images"].id.get_chunk_info_by_coord((160, 0, 0, 0))
with open(sys.argv[1], "r+b") as f:
    f.seek(info.byte_offset)
    f.write(b"\xa5" * info.size)
PY
expect_exit 65 run_mpi 2 "$SPOTTRAIN" train --config "$cfg" --data-dir "$WORK/damaged.h5" --run-dir "$WORK/damaged" \
  --threads 1 --max-steps 30 "${aug[@]}" "${stream[@]}" --set data.prefetch=true
expect_err "damaged.h5: dataset /train/images: cannot read images 160\.\.175 .*needed for image 1[67][0-9]"
expect_exit 64 "$SPOTTRAIN" train --config "$cfg" --data-dir "$WORK/data/h5nchw" --run-dir "$WORK/small" \
  --max-steps 1 --set data.stream=true --set data.cache_mb=0.01
expect_err "data.cache_mb = 0.010 cannot hold one chunk row of 16 images"
echo "it_data_stream: all checks passed"
