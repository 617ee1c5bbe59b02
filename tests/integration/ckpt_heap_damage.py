#!/usr/bin/python3
"""ckpt_heap_damage.py [--format1] CKPT - the hostile checkpoint of issue 18: a valid seal over a damaged
HDF5 global heap. Format 2 files have no global heap, so the root attribute `config` is first
rewritten as a variable-length string (as format 1 wrote it; h5py, python3-h5py), then the size
of the first object of the global heap collection ("GCOL") is made huge, and the file is
sealed again (ckpt_seal.c's layout). Before format 2, reading such a file crashed spottrain in
H5HG_read (memcpy-param-overlap under ASan, SIGSEGV otherwise). Exit 0 when the file was made.
--format1: no damage; the file is made what an older build wrote (format_version 1, every
string attribute variable-length), for the tests of the refusal and of scripts/ckpt_upgrade.py."""
import struct
import sys
import zlib

import h5py

SEAL = 48
MAGIC = b"spottrain-seal1\n"


def unseal(path):
    data = open(path, "rb").read()
    if data[-SEAL:].startswith(MAGIC):
        size, step, flags = struct.unpack("<QqI", data[-SEAL + 16:-SEAL + 36])
        return data[:-SEAL], step, flags
    raise SystemExit(f"{path}: no seal")


def to_vlen(attrs, name):
    raw = attrs[name]
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    del attrs[name]
    attrs.create(name, text, dtype=h5py.string_dtype("utf-8"))


def main():
    format1 = sys.argv[1] == "--format1"
    path = sys.argv[-1]
    body, step, flags = unseal(path)
    open(path, "wb").write(body)
    with h5py.File(path, "r+") as f:
        to_vlen(f.attrs, "config")
        if format1:
            to_vlen(f.attrs, "format")
            to_vlen(f["optim"].attrs, "optimizer")
            del f.attrs["format_version"]
            f.attrs.create("format_version", 1, dtype="<i8")
    body = bytearray(open(path, "rb").read())
    at = body.find(b"GCOL")
    if at < 0:
        raise SystemExit(f"{path}: no global heap collection after writing a variable-length string")
    # collection header: "GCOL", version, 3 reserved, 8-byte size; then objects:
    # 2-byte index, 2-byte references, 4 reserved, 8-byte size, data
    if not format1:
        obj = at + 16
        struct.pack_into("<Q", body, obj + 8, 0x7FFFFFFFFFFF0000)
    seal = bytearray(MAGIC + struct.pack("<QqIII", len(body) + SEAL, step, flags, 0, zlib.crc32(body)))
    seal += struct.pack("<I", zlib.crc32(bytes(seal)))
    open(path, "wb").write(bytes(body) + bytes(seal))


if __name__ == "__main__":
    main()
