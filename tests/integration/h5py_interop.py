#!/usr/bin/python3
"""A spottrain checkpoint read by h5py (Debian's python3-h5py): schema, types, values.

usage: h5py_interop.py TEST_CKPT [WORKDIR]   run TEST_CKPT (the test_ckpt unit test program) with
                                             CKPT_INTEROP_OUT=WORKDIR/interop.h5, then check that file
       h5py_interop.py --file CKPT.h5        check a fixture written earlier

The fixture (write_interop_fixture in tests/unit/test_ckpt.c; keep the two in step) is the tiny
model of test_ckpt.c, tensors in this order and flat layout:
    conv1.weight [4,1,3,3] @0, conv1.bias [4] @36, fc1.weight [10,16] @40, fc1.bias [10] @200
with flat index i over the 210 floats:
    params[i]      = ((i % 2001) - 1000) / 1024
    exp_avg[i]     = ((3 i) % 1999 - 999) / 4096
    exp_avg_sq[i]  = ((4 i) % 1999 - 999) / 4096
all exact in float32. The content checksum and the seal are recomputed from their documented
definitions (src/ckpt.c, src/ckpt_seal.c). Exit 0 on success, 1 on a mismatch, 77 (skip) if
h5py or numpy cannot be imported.
"""
import hashlib
import os
import struct
import subprocess
import sys
import zlib

try:
    import h5py
    import numpy as np
except ImportError as e:  # pragma: no cover
    print(f"skip: {e} (run with Debian's /usr/bin/python3, python3-h5py and python3-numpy)")
    sys.exit(77)

CONFIG_TEXT = "[train]\nepochs = 12\noptimizer = adam\n\n[layer.conv1]\ntype = conv2d\n"
TENSORS = [("conv1.weight", (4, 1, 3, 3)), ("conv1.bias", (4,)), ("fc1.weight", (10, 16)), ("fc1.bias", (10,))]
N_PARAMS = 210
ROOT_ATTRS = {  # name: (value, numpy type)
    "format": (b"spottrain-ckpt", bytes),  # format 2: fixed-length strings, which h5py reads as bytes
    "format_version": (2, np.int64),
    "model_hash": (0x5EED5EED12345678, np.uint64),
    "step": (4321, np.int64),
    "epoch": (3, np.int64),
    "sample_in_epoch": (512, np.int64),
    "global_batch": (128, np.int64),
    "world_size": (4, np.int64),
    "generation": (2, np.int64),
    "seed": (42, np.uint64),
    "wall_time_s": (123.5, np.float64),
    "epoch_end": (1, np.int64),
    "config": (CONFIG_TEXT.encode(), bytes),
}
OPTIM_ATTRS = {"optimizer": (b"adam", bytes), "lr": (np.float32(0.001), np.float32), "step": (4321, np.int64)}
SEAL_MAGIC = b"spottrain-seal1\n"

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def expected(kind):
    i = np.arange(N_PARAMS, dtype=np.int64)
    if kind == "params":
        v = ((i % 2001) - 1000) / 1024.0
    elif kind == "exp_avg":
        v = ((i * 3) % 1999 - 999) / 4096.0
    else:
        v = ((i * 4) % 1999 - 999) / 4096.0
    return v.astype(np.float32)


def check_attrs(obj, want, where):
    for name, (value, typ) in want.items():
        check(name in obj.attrs, f"{where}: attribute {name} missing")
        if name not in obj.attrs:
            continue
        got = obj.attrs[name]
        check(isinstance(got, typ), f"{where}: attribute {name} is {type(got).__name__}, expected {typ.__name__}")
        check(got == value, f"{where}: attribute {name} = {got!r}, expected {value!r}")


def check_group(g, kind, where):
    names = list(g.keys())
    # h5py lists a group whose creation order is tracked in that order; the checksum walks it
    check(names == [n for n, _ in TENSORS], f"{where}: datasets {names}, expected creation order")
    flat = expected(kind)
    offset = 0
    values = []
    for name, shape in TENSORS:
        d = g[name]
        check(d.dtype == np.dtype("<f4"), f"{where}/{name}: dtype {d.dtype}")
        check(d.shape == shape, f"{where}/{name}: shape {d.shape}, expected {shape}")
        check(d.chunks is None and d.compression is None, f"{where}/{name}: not contiguous and uncompressed")
        n = int(np.prod(shape))
        a = d[()]
        check(np.array_equal(a.reshape(-1), flat[offset:offset + n]), f"{where}/{name}: values differ from the formula")
        values.append(a.astype("<f4").tobytes())
        offset += n
    return values


def content_checksum(f, tensor_bytes):
    crc = 0
    for b in tensor_bytes:
        crc = zlib.crc32(b, crc)
    a, o = f.attrs, f["optim"].attrs
    rec = struct.pack("<9qQdf", int(a["step"]), int(a["epoch"]), int(a["sample_in_epoch"]), int(a["global_batch"]),
                      int(a["world_size"]), int(a["generation"]), int(a["seed"]), int(a["epoch_end"]), int(o["step"]),
                      int(a["model_hash"]), float(a["wall_time_s"]), o["lr"])
    crc = zlib.crc32(rec, crc)
    crc = zlib.crc32(bytes(o["optimizer"]) + b"\0" + bytes(a["config"]), crc)
    return crc


def check_seal(path):
    data = open(path, "rb").read()
    seal, body = data[-48:], data[:-48]
    check(seal[:16] == SEAL_MAGIC, "seal: magic missing at the end of the file")
    size, step, flags, zero, body_crc, own_crc = struct.unpack("<QqIIII", seal[16:])
    check(size == len(data), f"seal: size {size}, file {len(data)}")
    check(step == ROOT_ATTRS["step"][0], f"seal: step {step}")
    check(flags == ROOT_ATTRS["epoch_end"][0] and zero == 0, f"seal: flags {flags}, {zero}")
    check(body_crc == zlib.crc32(body), "seal: crc of the HDF5 part differs")
    check(own_crc == zlib.crc32(seal[:44]), "seal: crc of the seal differs")


def check_file(path):
    before = hashlib.sha256(open(path, "rb").read()).hexdigest()
    check_seal(path)
    with h5py.File(path, "r") as f:
        check_attrs(f, ROOT_ATTRS, "/")
        check(isinstance(f.attrs.get("content_checksum"), np.uint32), "/: content_checksum is not uint32")
        check(sorted(f.keys()) == ["optim", "params"], f"/: groups {sorted(f.keys())}")
        check_attrs(f["optim"], OPTIM_ATTRS, "/optim")
        tensor_bytes = check_group(f["params"], "params", "/params")
        states = list(f["optim"].keys())
        check(states == ["exp_avg", "exp_avg_sq"], f"/optim: states {states}, expected creation order")
        for s in states:
            tensor_bytes += check_group(f["optim"][s], s, f"/optim/{s}")
        check(content_checksum(f, tensor_bytes) == int(f.attrs["content_checksum"]),
              "content_checksum differs from the documented definition")
    after = hashlib.sha256(open(path, "rb").read()).hexdigest()
    check(before == after, "reading with h5py changed the file")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--file":
        path = sys.argv[2]
    elif len(sys.argv) in (2, 3):
        workdir = sys.argv[2] if len(sys.argv) == 3 else "."
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "interop.h5")
        env = dict(os.environ, CKPT_INTEROP_OUT=path)
        r = subprocess.run([sys.argv[1]], env=env)
        if r.returncode != 0:
            print(f"FAIL: {sys.argv[1]} could not write the fixture (exit {r.returncode})")
            return 1
    else:
        print(__doc__)
        return 2
    try:
        check_file(path)
    except Exception as e:  # a file h5py cannot read at all
        check(False, f"{path}: {type(e).__name__}: {e}")
    print(f"{path}: {'ok' if not failures else f'{len(failures)} problem(s)'} (h5py {h5py.__version__})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
