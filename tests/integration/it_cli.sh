#!/usr/bin/env bash
# The command line and config contract: help, version, and every kind of bad
# input gives its documented exit code and a message saying what and where.
. "$(dirname "$0")/common.sh"

expect_exit 0 "$SPOTTRAIN" --help
grep -q "usage: spottrain" "$WORK/last.out" || fail "--help prints no usage"
expect_exit 0 "$SPOTTRAIN" --version
grep -Eq "^spottrain [0-9]+\.[0-9]+\.[0-9]+" "$WORK/last.out" || fail "--version"
expect_exit 64 "$SPOTTRAIN"
expect_exit 64 "$SPOTTRAIN" frobnicate
expect_exit 64 "$SPOTTRAIN" train
expect_err "needs --config"
expect_exit 64 "$SPOTTRAIN" train --config "$CONFIGS/tiny.ini" --bogus
expect_err "unknown option '--bogus'"
expect_exit 64 "$SPOTTRAIN" train --config "$CONFIGS/tiny.ini" --epochs zero
expect_exit 64 "$SPOTTRAIN" train --config "$CONFIGS/tiny.ini" --device tpu
expect_exit 66 "$SPOTTRAIN" train --config "$WORK/nonexistent.ini"
expect_err "nonexistent.ini"

# config errors name the file and line
sed 's/^filters = 8/filterz = 8/' "$CONFIGS/tiny.ini" >"$WORK/badkey.ini"
expect_exit 64 "$SPOTTRAIN" train --config "$WORK/badkey.ini" --run-dir "$WORK/r"
expect_err "badkey.ini:[0-9]+: unknown key 'filterz' for a conv2d layer in \[layer.conv1\]"
sed 's/^type = maxpool/type = maxpool3d/' "$CONFIGS/tiny.ini" >"$WORK/badtype.ini"
expect_exit 64 "$SPOTTRAIN" train --config "$WORK/badtype.ini"
expect_err "badtype.ini:[0-9]+: unknown layer type 'maxpool3d'"
printf '[train]\nepochs = 3\n[nosuch]\nx = 1\n' >"$WORK/badsection.ini"
expect_exit 64 "$SPOTTRAIN" train --config "$WORK/badsection.ini"
expect_err "badsection.ini:4: unknown section \[nosuch\]"
printf '[train]\nseed = 7\nepochs = 3\nseed = 9\n' >"$WORK/twice.ini"
expect_exit 64 "$SPOTTRAIN" train --config "$WORK/twice.ini"
expect_err "twice.ini:4: key 'seed' appears twice in its section \(first at line 2\)"
printf '[train]\nseed = 7\n  9\n' >"$WORK/indented.ini"
expect_exit 64 "$SPOTTRAIN" train --config "$WORK/indented.ini"
expect_err "indented.ini:3: an indented line"
printf 'this is not ini\n' >"$WORK/garbage.ini"
expect_exit 64 "$SPOTTRAIN" train --config "$WORK/garbage.ini"
expect_err "garbage.ini:1:"
expect_exit 64 "$SPOTTRAIN" train --config "$CONFIGS/tiny.ini" --set train.global_batch=-5
expect_err "train.global_batch must be"
expect_exit 64 "$SPOTTRAIN" train --config "$CONFIGS/tiny.ini" --set train.optimizer=rmsprop
expect_err "train.optimizer must be one of sgd, adam, adamw, adadelta"
expect_exit 64 "$SPOTTRAIN" train --config "$CONFIGS/tiny.ini" --set nodot
# impossible shapes
expect_exit 64 "$SPOTTRAIN" train --config "$CONFIGS/tiny.ini" --set layer.conv1.kernel=29
expect_err "\[layer.conv1\] kernel 29x29 is larger than its 28x28 input"
sed '/^\[layer.flatten\]/,/^type = flatten/d' "$CONFIGS/tiny.ini" >"$WORK/noflat.ini"
expect_exit 64 "$SPOTTRAIN" train --config "$WORK/noflat.ini"
expect_err "put a flatten layer before it"

# data errors: missing (66), malformed (65), naming the file
expect_exit 66 "$SPOTTRAIN" train --config "$CONFIGS/tiny.ini" --data-dir "$WORK/nodata" --run-dir "$WORK/r1"
expect_err "nodata"
mkdir -p "$WORK/bad"
cp "$DATA"/t10k-* "$DATA"/train-labels-* "$WORK/bad/"
head -c 100000 <"$(ls "$DATA"/train-images*)" >"$WORK/bad/train-images-idx3-ubyte.gz"
expect_exit 65 "$SPOTTRAIN" train --config "$CONFIGS/tiny.ini" --data-dir "$WORK/bad" --run-dir "$WORK/r2"
expect_err "train-images-idx3-ubyte.gz"
# the same under mpirun: every rank agrees, the exit code passes through
expect_exit 65 run_mpi 2 "$SPOTTRAIN" train --config "$CONFIGS/tiny.ini" --data-dir "$WORK/bad" --run-dir "$WORK/r3"

# no GPU here (or a CPU-only build): --device cuda is a usage error, auto falls back with one line
if [ "${SPOTTRAIN_HAVE_GPU:-0}" != 1 ]; then
  expect_exit 64 "$SPOTTRAIN" train --config "$CONFIGS/tiny.ini" --data-dir "$DATA" --device cuda --run-dir "$WORK/r4"
  expect_err "--device cuda"
fi
echo "it_cli: all checks passed"
