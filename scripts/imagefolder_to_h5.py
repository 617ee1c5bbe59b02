#!/usr/bin/python3
"""Convert an image-folder tree into a spottrain HDF5 image set.

The input is torchvision's ImageFolder layout: one folder per class, named
after it, holding that class's images (.png, .jpg, .jpeg, .bmp, .gif, .webp):

    ROOT/cat/001.jpg  ROOT/cat/002.png  ROOT/dog/x.jpg ...

Classes are numbered in sorted name order (as ImageFolder does); images are
taken in sorted file order within each class. Every image is converted to RGB
(or to grey with --channels 1) and resized to --size (HxW, or one number for a
square) with Pillow's bicubic filter (unchanged when it already has that size).

    imagefolder_to_h5.py TRAIN_ROOT OUT.h5 --size 32 [--test-root DIR | --test-fraction F]
                         [--layout NHWC|NCHW] [--channels 3|1]

writes /train/images and /test/images (uint8, N x H x W x C, or N x C x H x W
with the layout attribute "NCHW", a fixed-length string; chunked by 256 images, gzip), /train/labels
and /test/labels (uint8), and /classes (the class names, UTF-8). With
--test-fraction the last ceil(F * n) images of each class (in sorted order)
form the test split. Images are streamed one chunk at a time, so the tree may
be larger than memory. The file is written to OUT.h5.tmp and renamed when
complete. Needs Debian's python3-h5py, python3-numpy and python3-pil.
"""
import argparse
import math
import os
import sys

import h5py
import numpy as np
from PIL import Image

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
CHUNK = 256


def scan(root, classes=None):
    """[(path, label)] of the tree at root, and its class names."""
    names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if classes is None:
        classes = names
    else:
        extra = [n for n in names if n not in classes]
        if extra:
            sys.exit("imagefolder_to_h5: %s has classes the training tree lacks: %s" % (root, ", ".join(extra)))
    if not classes:
        sys.exit("imagefolder_to_h5: %s holds no class folders" % root)
    if len(classes) > 256:
        sys.exit("imagefolder_to_h5: %d classes; labels are uint8 (at most 256)" % len(classes))
    items = []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS))
        items.extend((os.path.join(folder, f), label) for f in files)
    if not items:
        sys.exit("imagefolder_to_h5: no images under %s" % root)
    return items, classes


def split_fraction(items, fraction):
    """The last ceil(fraction * n) images of each class go to the test split."""
    train, test = [], []
    for label in sorted(set(lab for _, lab in items)):
        mine = [it for it in items if it[1] == label]
        k = min(len(mine) - 1, math.ceil(fraction * len(mine))) if len(mine) > 1 else 0
        train.extend(mine[:len(mine) - k])
        test.extend(mine[len(mine) - k:])
    return train, test


def load(path, size, channels):
    """One image as H x W x C uint8."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BICUBIC)
            a = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as e:
        sys.exit("imagefolder_to_h5: %s: cannot read the image: %s" % (path, e))
    return a.reshape(size[0], size[1], channels)


def write_split(f, group, items, size, channels, nchw):
    """Stream items into group/images and group/labels, CHUNK images at a time."""
    n = len(items)
    shape = (n, channels, size[0], size[1]) if nchw else (n, size[0], size[1], channels)
    d = f.create_dataset(group + "/images", shape=shape, dtype=np.uint8,
                         chunks=(min(CHUNK, max(n, 1)),) + shape[1:], compression="gzip")
    if nchw:
        # a fixed-length string: spottrain refuses a variable-length one (h5py's default for a str)
        d.attrs.create("layout", np.bytes_("NCHW"))
    f.create_dataset(group + "/labels", data=np.array([lab for _, lab in items], dtype=np.uint8))
    for lo in range(0, n, CHUNK):
        block = np.stack([load(p, size, channels) for p, _ in items[lo:lo + CHUNK]])
        d[lo:lo + len(block)] = block.transpose(0, 3, 1, 2) if nchw else block


def parse_size(text):
    parts = text.lower().split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) not in (1, 2) or min(hw) < 1 or max(hw) > 4096:
        raise argparse.ArgumentTypeError("--size is H, or HxW, 1..4096")
    return (hw[0], hw[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("train_root")
    ap.add_argument("out")
    ap.add_argument("--size", type=parse_size, required=True)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--test-root")
    g.add_argument("--test-fraction", type=float, default=0.1)
    ap.add_argument("--layout", choices=["NHWC", "NCHW", "nhwc", "nchw"], default="NHWC")
    ap.add_argument("--channels", type=int, choices=[1, 3], default=3)
    a = ap.parse_args()
    items, classes = scan(a.train_root)
    if a.test_root:
        train, (test, _) = items, scan(a.test_root, classes)
    else:
        if not 0 <= a.test_fraction < 1:
            sys.exit("imagefolder_to_h5: --test-fraction must be in [0, 1)")
        train, test = split_fraction(items, a.test_fraction)
    if not test:
        sys.exit("imagefolder_to_h5: the test split is empty (give --test-root or a larger --test-fraction)")
    tmp = a.out + ".tmp"
    nchw = a.layout.upper() == "NCHW"
    with h5py.File(tmp, "w") as f:
        write_split(f, "train", train, a.size, a.channels, nchw)
        write_split(f, "test", test, a.size, a.channels, nchw)
        f.create_dataset("classes", data=[c.encode("utf-8") for c in classes], dtype=h5py.string_dtype("utf-8"))
    os.replace(tmp, a.out)
    print("imagefolder_to_h5: %s: %d train and %d test images of %dx%dx%d (%s), %d classes"
          % (a.out, len(train), len(test), a.channels, a.size[0], a.size[1], a.layout.upper(), len(classes)))


if __name__ == "__main__":
    main()
