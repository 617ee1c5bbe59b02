#!/usr/bin/python3
"""ckpt_forge_shared.py CKPT - the forged checkpoint of issue 18 (the class of
tests/fuzz/findings/ckpt/hdf5_shared_message_segv): the datatype message in the object header
of /params/<first tensor> is marked shared (a message in the shared-message heap) in a file
that has no shared-message table, and the file is sealed again (ckpt_seal.c's layout), so every
check before HDF5 passes. HDF5 1.10.8 decodes the message in H5Dopen2 and reads address 0
(SIGSEGV in H5F__accum_read <- H5SM_get_fheap_addr <- H5O_shared_decode). Exit 0 when the
file was made (python3-h5py finds the header; the bytes are patched by hand)."""
import struct
import sys
import zlib

import h5py

SEAL = 48
MAGIC = b"spottrain-seal1\n"
DATATYPE = 0x0003  # object header message type
SHARED = 0x02      # message flag: the message is stored elsewhere, this is a reference to it
SOHM = 1           # shared message (version 3) kind: in the shared-message heap


def main():
    path = sys.argv[1]
    data = bytearray(open(path, "rb").read())
    if not data[-SEAL:].startswith(MAGIC):
        raise SystemExit(f"{path}: no seal")
    step, flags = struct.unpack("<qI", data[-SEAL + 24:-SEAL + 36])
    body = data[:-SEAL]
    with h5py.File(path, "r") as f:
        group = f["params"]
        first = next(iter(group))
        addr = h5py.h5o.get_info(group[first].id).addr
    # version-1 object header: version, reserved, 2-byte message count, 4-byte references,
    # 4-byte header size, 4 bytes of padding; then messages: 2-byte type, 2-byte size,
    # flags, 3 reserved, the body (size bytes)
    if body[addr] != 1:
        raise SystemExit(f"{path}: /params/{first} has an object header of version {body[addr]}, not 1")
    n_msgs = struct.unpack_from("<H", body, addr + 2)[0]
    at = addr + 16
    for _ in range(n_msgs):
        kind, size = struct.unpack_from("<HH", body, at)
        if kind == DATATYPE:
            body[at + 4] |= SHARED
            struct.pack_into("<BBQ", body, at + 8, 3, SOHM, 0x0101010101010101)  # version 3, heap id
            break
        at += 8 + size
    else:
        raise SystemExit(f"{path}: no datatype message in /params/{first}")
    seal = bytearray(MAGIC + struct.pack("<QqIII", len(body) + SEAL, step, flags, 0, zlib.crc32(body)))
    seal += struct.pack("<I", zlib.crc32(bytes(seal)))
    open(path, "wb").write(bytes(body) + bytes(seal))


if __name__ == "__main__":
    main()
