#!/usr/bin/env python3
"""Compare the parameters (and optionally optimizer state) of two spottrain checkpoints.

usage: compare_params.py A.h5 B.h5 (--bitwise | --rtol X) [--optim]
Buffers (/buffers: BatchNorm's running statistics) are compared whenever a file has them.
Relative difference per tensor: ||a - b|| / ||a||. Exit 0 if within bounds, 1 if not.
"""
import argparse
import sys

import h5py
import numpy as np


def tensors(f, with_optim):
    out = {}
    f["params"].visititems(lambda n, d: out.__setitem__("params/" + n, d[()]) if isinstance(d, h5py.Dataset) else None)
    if "buffers" in f:
        f["buffers"].visititems(lambda n, d: out.__setitem__("buffers/" + n, d[()]) if isinstance(d, h5py.Dataset) else None)
    if with_optim and "optim" in f:
        f["optim"].visititems(lambda n, d: out.__setitem__("optim/" + n, d[()]) if isinstance(d, h5py.Dataset) else None)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--bitwise", action="store_true")
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--optim", action="store_true")
    args = ap.parse_args()
    with h5py.File(args.a, "r") as fa, h5py.File(args.b, "r") as fb:
        ta, tb = tensors(fa, args.optim), tensors(fb, args.optim)
        if sorted(ta) != sorted(tb):
            print("tensor names differ:", sorted(set(ta) ^ set(tb)))
            return 1
        worst, bad = 0.0, []
        for name in sorted(ta):
            a, b = ta[name], tb[name]
            if a.shape != b.shape:
                bad.append(f"{name}: shapes {a.shape} vs {b.shape}")
                continue
            if args.bitwise:
                if a.tobytes() != b.tobytes():
                    n = int(np.sum(a.view(np.uint32) != b.view(np.uint32)))
                    bad.append(f"{name}: {n} of {a.size} values differ in their bits")
                continue
            na = float(np.linalg.norm(a.astype(np.float64)))
            rel = float(np.linalg.norm((a - b).astype(np.float64))) / (na if na > 0 else 1.0)
            worst = max(worst, rel)
            if rel > args.rtol:
                bad.append(f"{name}: relative difference {rel:.3g} > {args.rtol:g}")
        print(f"{len(ta)} tensors compared, worst relative difference {worst:.3g}" +
              (" (bitwise mode)" if args.bitwise else ""))
        for b in bad:
            print("  " + b)
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
