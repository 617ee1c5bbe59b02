#!/usr/bin/env bash
# Invariant 1 with augmentation (issue 15): random crops (reflect padding),
# flips, cutout and normalisation on the colour set, 30 steps across an epoch
# boundary, give bit-identical parameters and optimizer state for W = 1 (2
# threads), W = 2 and W = 3 (1 thread), and for a run stopped at step 12 at
# W = 2 and resumed at W = 3. Without augmentation the result differs (so the
# augmentation did act), and data.prefetch does not change a bit.
. "$(dirname "$0")/common.sh"
cfg="$TESTS_DIR/integration/colour.ini"
"$PYTHON" "$TESTS_DIR/integration/make_colour_data.py" "$WORK/data" --train 800 --test 40
aug=(--set data.crop_pad=4 --set data.pad_mode=reflect --set data.flip=true --set data.cutout=8
     --set data.mean=0.45,0.45,0.45 --set data.std=0.25,0.25,0.25)
run() { # name ranks threads max-steps [extra args]
  local name=$1 np=$2 th=$3 steps=$4; shift 4
  run_mpi "$np" "$SPOTTRAIN" train --config "$cfg" --data-dir "$WORK/data/cifar" --run-dir "$WORK/$name" \
    --threads "$th" --max-steps "$steps" "$@" >>"$WORK/$name.out" 2>>"$WORK/$name.err" \
    || { cat "$WORK/$name.err"; fail "run $name (W=$np) failed"; }
  [ "$(last_json "$WORK/$name.out" steps)" = "$steps" ] || fail "run $name did not reach step $steps"
}
run w1 1 2 30 "${aug[@]}"
run w2 2 1 30 "${aug[@]}"
run w3 3 1 30 "${aug[@]}"
run resumed 2 1 12 "${aug[@]}"
run resumed 3 1 30 "${aug[@]}"
run prefetch 2 1 30 "${aug[@]}" --set data.prefetch=true
run plain 1 2 30
same() { "$PYTHON" "$TESTS_DIR/integration/compare_params.py" "$WORK/$1/final.h5" "$WORK/$2/final.h5" --bitwise --optim; }
grep -Eq "data.prefetch: [1-9][0-9]* shard fills served from the prefetch" "$WORK/prefetch.err" \
  || { cat "$WORK/prefetch.err"; fail "data.prefetch served nothing"; }
same w1 w2 || fail "augmented W=1 vs W=2 not bit-identical"
same w1 w3 || fail "augmented W=1 vs W=3 not bit-identical"
same w1 resumed || fail "augmented run stopped at W=2 and resumed at W=3 differs from W=1"
same w1 prefetch || fail "data.prefetch changed the trajectory"
if same w1 plain >/dev/null 2>&1; then fail "augmentation had no effect"; fi
echo "it_data_augment: all checks passed"
