#!/usr/bin/env bash
# scripts/fetch_cifar10.sh against a local server (nothing leaves the machine):
# a transfer cut in the middle is resumed with a Range request and the
# archive is unpacked where the CIFAR reader finds it; a second run makes no
# request; a corrupted download is refused (65) with nothing left in place.
. "$(dirname "$0")/common.sh"
"$PYTHON" "$TESTS_DIR/integration/make_colour_data.py" "$WORK/data" --train 60 --test 20
mkdir -p "$WORK/root/src/cifar-10-batches-bin"
cp "$WORK/data/cifar/"*.bin "$WORK/root/src/cifar-10-batches-bin/"
tar -czf "$WORK/root/cifar-10-binary.tar.gz" -C "$WORK/root/src" cifar-10-batches-bin
export CIFAR10_MD5 CIFAR10_SIZE
CIFAR10_MD5=$(md5sum "$WORK/root/cifar-10-binary.tar.gz" | cut -d' ' -f1)
CIFAR10_SIZE=$(stat -c %s "$WORK/root/cifar-10-binary.tar.gz")

"$PYTHON" "$TESTS_DIR/integration/serve_files.py" --root "$WORK/root" --log "$WORK/requests.log" \
  >"$WORK/port" 2>"$WORK/server.err" &
SERVER=$!
stop_server() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; cleanup; }
trap stop_server EXIT
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT=$(head -n 1 "$WORK/port")
[ -n "$PORT" ] || { cat "$WORK/server.err" >&2; fail "serve_files.py did not start"; }
fetch="$TESTS_DIR/../scripts/fetch_cifar10.sh"

bash "$fetch" "$WORK/vol" "http://127.0.0.1:$PORT/drop-once/cifar-10-binary.tar.gz" >"$WORK/f1.out" 2>&1 \
  || { cat "$WORK/f1.out"; fail "the fetch did not recover from a cut transfer"; }
grep -q '"range": "bytes=[1-9]' "$WORK/requests.log" || { cat "$WORK/requests.log"; fail "no Range request resumed the cut transfer"; }
for f in data_batch_1.bin data_batch_5.bin test_batch.bin; do
  cmp -s "$WORK/vol/cifar-10-batches-bin/$f" "$WORK/data/cifar/$f" || fail "$f differs after the fetch"
done
n=$(wc -l <"$WORK/requests.log")
bash "$fetch" "$WORK/vol" "http://127.0.0.1:$PORT/files/cifar-10-binary.tar.gz" >"$WORK/f2.out" 2>&1 || fail "second fetch failed"
[ "$(wc -l <"$WORK/requests.log")" = "$n" ] || fail "a complete folder was downloaded again"

rc=0
bash "$fetch" "$WORK/bad" "http://127.0.0.1:$PORT/wrong/cifar-10-binary.tar.gz" >"$WORK/f3.out" 2>&1 || rc=$?
[ "$rc" = 65 ] || { cat "$WORK/f3.out"; fail "a corrupted archive gave exit $rc, not 65"; }
grep -q "MD5" "$WORK/f3.out" || fail "the refusal does not name the checksum"
[ ! -e "$WORK/bad/cifar-10-binary.tar.gz" ] && [ ! -e "$WORK/bad/cifar-10-binary.tar.gz.part" ] \
  && [ ! -e "$WORK/bad/cifar-10-batches-bin" ] || fail "a corrupted download left files behind"
echo "it_data_fetch: all checks passed"
