#!/usr/bin/env bash
# Download the official CIFAR-10 binary archive into DIR and unpack it, for
# data.format = cifar10 with data.dir = DIR (the reader also looks in
# DIR/cifar-10-batches-bin, where the archive unpacks to).
#
#   scripts/fetch_cifar10.sh DIR [URL]
#
# Resumable: the archive is fetched into DIR/cifar-10-binary.tar.gz.part with
# HTTP Range requests (curl -C -), so a cut download continues where it
# stopped when the script is run again. The archive is accepted only with the
# published MD5 (https://www.cs.toronto.edu/~kriz/cifar.html) and its exact
# size, then renamed into place; it is unpacked into a temporary folder that
# is renamed to DIR/cifar-10-batches-bin only when complete. A lock on
# DIR/.fetch-cifar10.lock makes concurrent runs (several nodes on one shared
# volume) wait for each other. Nothing is downloaded when the files are there.
# spottrain itself does the same when data.url names the archive (README "Data");
# this script is for hosts that fetch the data before spottrain is installed.
set -euo pipefail
dir=${1:?usage: fetch_cifar10.sh DIR [URL]}
url=${2:-https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz}
# the published checksum and size (tests serve a small archive and set both)
md5=${CIFAR10_MD5:-c32a1d4ab5d03f1284b67883e8d87530}
size=${CIFAR10_SIZE:-170052171}
name=cifar-10-binary.tar.gz
out="$dir/cifar-10-batches-bin"
files=(data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin)

complete() { for f in "${files[@]}"; do [ -s "$out/$f" ] || return 1; done; }

mkdir -p "$dir"
exec 9>"$dir/.fetch-cifar10.lock"
flock 9
if complete; then
  echo "fetch_cifar10: $out is complete; nothing to do"
  exit 0
fi
if [ ! -f "$dir/$name" ]; then
  for attempt in 1 2 3 4 5 6; do
    if curl -fL --connect-timeout 15 --speed-limit 1024 --speed-time 30 -C - -o "$dir/$name.part" "$url"; then
      break
    fi
    [ "$attempt" -lt 6 ] || { echo "fetch_cifar10: $url still fails; run again to resume" >&2; exit 74; }
    sleep $((attempt * 2))
  done
  got=$(stat -c %s "$dir/$name.part")
  sum=$(md5sum "$dir/$name.part" | cut -d' ' -f1)
  if [ "$got" != "$size" ] || [ "$sum" != "$md5" ]; then
    echo "fetch_cifar10: $dir/$name.part is $got bytes with MD5 $sum, expected $size bytes and $md5; removed" >&2
    rm -f "$dir/$name.part"
    exit 65
  fi
  sync "$dir/$name.part"
  mv "$dir/$name.part" "$dir/$name"
fi
tmp=$(mktemp -d "$dir/.unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$dir/$name" -C "$tmp"
for f in "${files[@]}"; do
  [ -s "$tmp/cifar-10-batches-bin/$f" ] || { echo "fetch_cifar10: the archive lacks $f" >&2; exit 65; }
done
sync -f "$tmp/cifar-10-batches-bin/test_batch.bin"
rm -rf "$out"
mv "$tmp/cifar-10-batches-bin" "$out"
echo "fetch_cifar10: $out ready (set data.dir = $dir, data.format = cifar10)"
