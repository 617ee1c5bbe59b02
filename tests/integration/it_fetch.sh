#!/usr/bin/env bash
# Dataset download into data.dir (issue: interruption notices, data.url).
#  - 2 ranks, empty data.dir, data.url at a local server: the first rank of the
#    node downloads the four files (each requested once), the other waits, training runs;
#  - a second run finds the files and makes no request;
#  - a dropped connection is resumed with a Range request;
#  - a wrong data.sha256_* is exit 65 with no file left, a missing one exit 64
#    before any request.
# The server is tests/integration/serve_files.py on 127.0.0.1 only.
. "$(dirname "$0")/common.sh"

[ -e "$MNIST_DIR/SHA256SUMS" ] || fail "needs MNIST_DIR with the MNIST .gz files and SHA256SUMS"
NAMES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
KEYS=(sha256_train_images sha256_train_labels sha256_test_images sha256_test_labels)
sum_of() { awk -v n="$1" '$2 == n || $2 == "*" n { print $1 }' "$MNIST_DIR/SHA256SUMS"; }

"$PYTHON" "$TESTS_DIR/integration/serve_files.py" --root "$MNIST_DIR" --log "$WORK/requests.log" \
  >"$WORK/port" 2>"$WORK/server.err" &
SERVER=$!
stop_server() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; cleanup; }
trap stop_server EXIT
# wait for its port (python's start on a loaded machine can take long), or for it to die
for _ in $(seq 1200); do
  [ -s "$WORK/port" ] && break
  kill -0 "$SERVER" 2>/dev/null || break
  sleep 0.1
done
PORT=$(head -n 1 "$WORK/port")
[ -n "$PORT" ] || { cat "$WORK/server.err" >&2; fail "serve_files.py did not start"; }

# data_sets MODE [KEY=VALUE...]: --set arguments for data.url at MODE and the four checksums
data_sets() {
  local mode=$1; shift
  local args=(--set "data.url=http://127.0.0.1:$PORT/$mode/")
  for i in 0 1 2 3; do args+=(--set "data.${KEYS[$i]}=$(sum_of "${NAMES[$i]}")"); done
  for kv in "$@"; do args+=(--set "data.$kv"); done
  printf '%s\n' "${args[@]}"
}
requests() { wc -l <"$WORK/requests.log"; }
train_args=(train --config "$CONFIGS/tiny.ini" --threads 1 --max-steps 3)

# 1. fresh download under mpirun, 2 ranks on one node
mapfile -t sets < <(data_sets files)
expect_exit 0 run_mpi 2 "$SPOTTRAIN" "${train_args[@]}" --data-dir "$WORK/vol/data" --run-dir "$WORK/r1" "${sets[@]}"
for n in "${NAMES[@]}"; do
  cmp "$MNIST_DIR/$n" "$WORK/vol/data/$n" || fail "$n differs from the original"
  [ ! -e "$WORK/vol/data/$n.part" ] || fail "$n.part left behind"
  [ "$(grep -c "\"/files/$n\"" "$WORK/requests.log")" = 1 ] || fail "$n not requested exactly once"
done
[ "$(requests)" = 4 ] || fail "expected 4 requests, got $(requests)"

# 2. the files are there: no request, even with the server gone from the URL
mapfile -t sets < <(data_sets files)
expect_exit 0 run_mpi 2 "$SPOTTRAIN" "${train_args[@]}" --data-dir "$WORK/vol/data" --run-dir "$WORK/r2" "${sets[@]}" \
  --set "data.url=http://127.0.0.1:1/nothing/"
[ "$(requests)" = 4 ] || fail "a request was made although all files were present"

# 3. a connection dropped half-way is resumed with a Range request
mapfile -t sets < <(data_sets drop-once)
expect_exit 0 run_mpi 1 "$SPOTTRAIN" "${train_args[@]}" --data-dir "$WORK/vol3/data" --run-dir "$WORK/r3" "${sets[@]}"
cmp "$MNIST_DIR/${NAMES[0]}" "$WORK/vol3/data/${NAMES[0]}" || fail "resumed file differs"
grep "\"/drop-once/${NAMES[0]}\"" "$WORK/requests.log" | grep -q '"range": "bytes=[1-9][0-9]*-", "status": 206' ||
  fail "the resumed request had no Range"

# 4. a wrong checksum: exit 65, the file named, nothing left under either name
bad=0000000000000000000000000000000000000000000000000000000000000000
mapfile -t sets < <(data_sets files "sha256_test_labels=$bad")
expect_exit 65 run_mpi 2 "$SPOTTRAIN" "${train_args[@]}" --data-dir "$WORK/vol4/data" --run-dir "$WORK/r4" "${sets[@]}"
expect_err "SHA-256 mismatch for t10k-labels-idx1-ubyte.gz"
for f in "${NAMES[3]}" "${NAMES[3]}.part"; do
  [ ! -e "$WORK/vol4/data/$f" ] || fail "$f left in place after a failed checksum"
done

# 5. no checksum for a missing file: exit 64 before any request
before=$(requests)
mapfile -t sets < <(data_sets files "sha256_train_labels=")
expect_exit 64 run_mpi 1 "$SPOTTRAIN" "${train_args[@]}" --data-dir "$WORK/vol5/data" --run-dir "$WORK/r5" "${sets[@]}"
expect_err "data.sha256_train_labels is empty"
[ "$(requests)" = "$before" ] || fail "a request was made without a checksum"

echo "it_fetch: ok"
