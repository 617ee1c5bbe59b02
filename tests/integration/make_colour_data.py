#!/usr/bin/env python3
"""Write a colour-only data set in every format spottrain reads (for it_data_colour).

Class k (0..5) of an image is the order of its channels: every pixel is
brightness * perm_k(220, 130, 40) plus noise, with a random brightness per
pixel. The sum of the channels of a pixel (and so any grey version) has the
same distribution for every class: only a reader that keeps the channels
apart, in the right order and place, lets a network learn the label.

    make_colour_data.py OUT [--train N] [--test N] [--seed S]

writes OUT/cifar/{data_batch_1..5,test_batch}.bin (CIFAR-10 binary),
OUT/h5nhwc/set.h5 (NHWC, no layout attribute), OUT/h5nchw/set.h5 (NCHW,
chunked, gzip), and OUT/grey/ (CIFAR-10 binary of the channel mean: the
control that must not learn).
"""
import argparse
import itertools
import os

import h5py
import numpy as np

PERMS = list(itertools.permutations(range(3)))  # six classes


def make(n, rng):
    """n images (N, 32, 32, 3) uint8 and labels uint8."""
    labels = rng.integers(0, len(PERMS), n).astype(np.uint8)
    base = np.array([220.0, 130.0, 40.0])
    bright = rng.uniform(0.5, 1.0, (n, 32, 32, 1))
    order = np.array([PERMS[k] for k in labels])  # (n, 3)
    colours = base[order][:, None, None, :]  # (n, 1, 1, 3)
    img = bright * colours + rng.normal(0, 8, (n, 32, 32, 3))
    return np.clip(img, 0, 255).astype(np.uint8), labels


def write_cifar(folder, splits):
    os.makedirs(folder, exist_ok=True)
    for name, (img, lab) in splits.items():
        chw = img.transpose(0, 3, 1, 2).reshape(len(lab), -1)
        rec = np.concatenate([lab[:, None], chw], axis=1).astype(np.uint8)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(rec.tobytes())


def write_h5(path, train, test, nchw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        for g, (img, lab) in (("train", train), ("test", test)):
            data = img.transpose(0, 3, 1, 2) if nchw else img
            kw = {"chunks": (16,) + data.shape[1:], "compression": "gzip"} if nchw else {}
            d = f.create_dataset(g + "/images", data=data, **kw)
            if nchw:
                d.attrs.create("layout", np.bytes_("NCHW"))  # fixed-length, as spottrain reads it
            f.create_dataset(g + "/labels", data=lab.astype(np.int64 if nchw else np.uint8))
        f["classes"] = np.array(["".join("RGB"[i] for i in p) for p in PERMS], dtype="S3")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    train, test = make(a.train, rng), make(a.test, rng)
    parts = np.array_split(np.arange(a.train), 5)
    splits = {"data_batch_%d.bin" % (i + 1): (train[0][p], train[1][p]) for i, p in enumerate(parts)}
    splits["test_batch.bin"] = test
    write_cifar(os.path.join(a.out, "cifar"), splits)
    write_h5(os.path.join(a.out, "h5nhwc", "set.h5"), train, test, False)
    write_h5(os.path.join(a.out, "h5nchw", "set.h5"), train, test, True)
    grey = {k: (np.repeat(v[0].mean(axis=3, keepdims=True), 3, axis=3).astype(np.uint8), v[1])
            for k, v in splits.items()}
    write_cifar(os.path.join(a.out, "grey"), grey)


if __name__ == "__main__":
    main()
