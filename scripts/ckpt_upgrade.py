#!/usr/bin/python3
"""ckpt_upgrade.py CKPT... - convert checkpoints of format 1 to format 2 in place (issue 18).

Format 1 stored its string attributes (format, config, optimizer) as variable-length strings,
which HDF5 reads through its global heap without any check of the sizes there; spottrain of
format 2 refuses such files. Run this, on checkpoints you trust, to resume a run of an older
build: each file's seal is checked first (a damaged file is left alone), the strings are
rewritten as fixed-length UTF-8, format_version becomes 2, and the file is sealed again and
replaced atomically (FILE.upgrade.tmp, fsync, rename). Files already of format 2 are skipped.
Needs Debian's python3-h5py. Exit 0 when every file is of format 2 afterwards."""
import os
import struct
import sys
import zlib

import h5py
import numpy as np

SEAL, MAGIC = 48, b"spottrain-seal1\n"
STRINGS = {"/": ("format", "config"), "/optim": ("optimizer",)}


def unseal(data):
    """The HDF5 part, step and flags of a sealed file; None when the seal is not intact."""
    seal, body = data[-SEAL:], data[:-SEAL]
    if len(data) < SEAL or not seal.startswith(MAGIC) or zlib.crc32(seal[:44]) != struct.unpack("<I", seal[44:])[0]:
        return None
    size, step, flags, _, crc = struct.unpack("<QqIII", seal[16:44])
    return (body, step, flags) if size == len(data) and crc == zlib.crc32(body) else None


def upgrade(path):
    parts = unseal(open(path, "rb").read())
    if parts is None:
        print(f"{path}: no intact seal; left alone", file=sys.stderr)
        return False
    body, step, flags = parts
    tmp = path + ".upgrade.tmp"
    with open(tmp, "wb") as f:
        f.write(body)
    with h5py.File(tmp, "r+") as f:
        if int(f.attrs["format_version"]) != 1:
            os.unlink(tmp)
            print(f"{path}: format {int(f.attrs['format_version'])}, nothing to do")
            return int(f.attrs["format_version"]) == 2
        for obj, names in STRINGS.items():
            attrs = f[obj].attrs
            for name in names:
                raw = attrs[name]
                text = (raw.decode() if isinstance(raw, bytes) else str(raw)).encode()
                del attrs[name]
                attrs.create(name, np.frombuffer(text.ljust(max(1, len(text)), b"\0"), dtype=f"S{max(1, len(text))}")[0],
                             dtype=h5py.string_dtype("utf-8", max(1, len(text))))
        del f.attrs["format_version"]
        f.attrs.create("format_version", 2, dtype="<i8")
    body = open(tmp, "rb").read()
    seal = MAGIC + struct.pack("<QqIII", len(body) + SEAL, step, flags, 0, zlib.crc32(body))
    with open(tmp, "ab") as f:
        f.write(seal + struct.pack("<I", zlib.crc32(seal)))
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
    print(f"{path}: upgraded to format 2")
    return True


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 64
    return 0 if all([upgrade(p) for p in sys.argv[1:]]) else 65


if __name__ == "__main__":
    sys.exit(main())
