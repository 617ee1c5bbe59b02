#!/usr/bin/env bash
# scripts/fetch_cifar10.sh against a local server (nothing leaves the machine):
# a transfer cut in the middle is resumed with a Range request and the
# archive is unpacked where the CIFAR reader finds it; a second run makes no
# request; a corrupted download is refused (65) with nothing left in place.
# The same through the binary (data.url naming the archive, data_archive.h):
# resumed, verified by data.archive_digest (md5: or sha256:), unpacked where
# the reader finds it and trained on; no second request; a corrupted download
# and an archive that passes its checksum but holds a symlink or a ".." path
# are refused (65) leaving no data folder; an unverifiable name is 64.
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

# ---- the same through spottrain's own fetch (data.url = the archive) ----
cfg="$TESTS_DIR/integration/colour.ini"
md5=$(md5sum "$WORK/root/cifar-10-binary.tar.gz" | cut -d' ' -f1)
sha=$(sha256sum "$WORK/root/cifar-10-binary.tar.gz" | cut -d' ' -f1)
train_from() { # vol url digest [extra --set ...]
  local vol=$1 url=$2 dig=$3; shift 3
  "$SPOTTRAIN" train --config "$cfg" --data-dir "$vol" --run-dir "$vol.run" --max-steps 2 \
    --set data.format=cifar10 --set "data.url=$url" --set "data.archive_digest=$dig" "$@"
}
cp "$WORK/root/cifar-10-binary.tar.gz" "$WORK/root/copy.tar.gz" # drop-once cuts a name's first request only
n=$(wc -l <"$WORK/requests.log")
train_from "$WORK/bvol" "http://127.0.0.1:$PORT/drop-once/copy.tar.gz" "md5:$md5" \
  >"$WORK/b1.out" 2>"$WORK/b1.err" || { cat "$WORK/b1.err"; fail "training with data.url = the archive failed"; }
tail -n +"$((n + 1))" "$WORK/requests.log" | grep -q '"range": "bytes=[1-9]' \
  || { cat "$WORK/requests.log"; fail "spottrain's fetch did not resume the cut archive with a Range request"; }
for f in data_batch_1.bin data_batch_5.bin test_batch.bin; do
  cmp -s "$WORK/bvol/cifar-10-batches-bin/$f" "$WORK/data/cifar/$f" || fail "$f differs after spottrain's fetch"
done
ls -a "$WORK/bvol" | grep -q '^\.unpack\.' && fail "an unpack folder was left behind"
n=$(wc -l <"$WORK/requests.log")
rm -rf "$WORK/bvol.run"
train_from "$WORK/bvol" "http://127.0.0.1:$PORT/files/cifar-10-binary.tar.gz" "sha256:$sha" \
  >"$WORK/b2.out" 2>"$WORK/b2.err" || { cat "$WORK/b2.err"; fail "second training failed"; }
[ "$(wc -l <"$WORK/requests.log")" = "$n" ] || fail "spottrain downloaded a complete data set again"
expect_exit 65 train_from "$WORK/bbad" "http://127.0.0.1:$PORT/wrong/cifar-10-binary.tar.gz" "sha256:$sha"
expect_err "SHA-256 mismatch"
[ ! -e "$WORK/bbad/cifar-10-binary.tar.gz" ] && [ ! -e "$WORK/bbad/cifar-10-binary.tar.gz.part" ] \
  && [ ! -e "$WORK/bbad/cifar-10-batches-bin" ] || fail "spottrain left a corrupted download behind"

# archives that pass their checksum but must not be unpacked
"$PYTHON" - "$WORK/root" "$WORK/data/cifar" <<'PY'
import io, sys, tarfile
root, src = sys.argv[1], sys.argv[2]
def build(name, evil):
    with tarfile.open(root + "/" + name, "w:gz", format=tarfile.GNU_FORMAT) as t:
        for f in ["data_batch_%d.bin" % i for i in range(1, 6)] + ["test_batch.bin"]:
            t.add(src + "/" + f, arcname="cifar-10-batches-bin/" + f)
        t.addfile(evil)
link = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt"); link.type = tarfile.SYMTYPE; link.linkname = "/etc/passwd"
build("link.tar.gz", link)
up = tarfile.TarInfo("cifar-10-batches-bin/../../escaped.txt"); up.size = 0
build("dotdot.tar.gz", up)
PY
for evil in link dotdot; do
  sum=$(sha256sum "$WORK/root/$evil.tar.gz" | cut -d' ' -f1)
  expect_exit 65 train_from "$WORK/b$evil" "http://127.0.0.1:$PORT/files/$evil.tar.gz" "$sum"
  expect_err "batches.meta.txt|escaped.txt"
  [ ! -e "$WORK/b$evil/cifar-10-batches-bin" ] && [ ! -e "$WORK/escaped.txt" ] \
    && ! ls -a "$WORK/b$evil" | grep -q '^\.unpack\.' || fail "the $evil archive left files behind"
done
expect_exit 64 train_from "$WORK/bnone" "http://127.0.0.1:$PORT/files/link.tar.gz" ""
expect_err "data.archive_digest"
expect_exit 64 train_from "$WORK/bnone" "http://127.0.0.1:$PORT/files/link.tar.gz" "md5:${md5:0:31}"
expect_err "md5:<32 hex digits>"
[ ! -e "$WORK/bnone" ] || fail "a refused digest created the data folder"
expect_exit 64 train_from "$WORK/bnone" "http://127.0.0.1:$PORT/files/link.tar.gz" "md5:$md5" --set data.format=hdf5
expect_err "cifar10 only"
echo "it_data_fetch: all checks passed"
