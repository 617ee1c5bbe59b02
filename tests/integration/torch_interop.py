#!/usr/bin/python3
"""A spottrain ResNet checkpoint loaded unchanged by PyTorch (issue 14).

usage: torch_interop.py export CKPT.h5 OUT.npz
           (Debian's python3 with h5py) every tensor of /params (and /buffers when present)
           under its own name, as stored: these names and layouts are the state_dict's.
       torch_interop.py eval OUT.npz DATA_DIR ARCH INPUT
           (a python with torch and numpy) a torchvision-style ResNet (ARCH resnet20 or
           resnet18, INPUT CxHxW), load_state_dict(strict=True), eval mode on DATA_DIR's
           t10k set with spottrain's scaling (pixel / 255), prints a JSON line with
           test_accuracy, test_loss and images.
Exit 0, 1 on an error, 77 (skip) when a module cannot be imported.
"""
import gzip
import json
import os
import sys


def skip(e):
    print(f"skip: {e}")
    sys.exit(77)


def export(ckpt, out):
    try:
        import h5py
        import numpy as np
    except ImportError as e:
        skip(e)
    arrays = {}
    with h5py.File(ckpt, "r") as f:
        for group in ("params", "buffers"):
            if group in f:
                f[group].visititems(lambda n, d: arrays.__setitem__(n, d[()]) if isinstance(d, h5py.Dataset) else None)
    np.savez(out, **arrays)
    print(f"exported {len(arrays)} tensors")


def idx(path):
    for p in (path + ".gz", path):
        if os.path.exists(p):
            return (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
    raise FileNotFoundError(path)


def build(arch, in_c):
    import torch
    import torch.nn as nn

    def conv(i, o, k, s):
        return nn.Conv2d(i, o, k, s, padding=k // 2, bias=False)

    class BasicBlock(nn.Module):
        def __init__(self, inp, planes, stride):
            super().__init__()
            self.conv1, self.bn1 = conv(inp, planes, 3, stride), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = conv(planes, planes, 3, 1), nn.BatchNorm2d(planes)
            self.relu = nn.ReLU()
            self.downsample = None
            if stride != 1 or inp != planes:
                self.downsample = nn.Sequential(conv(inp, planes, 1, stride), nn.BatchNorm2d(planes))

        def forward(self, x):
            shortcut = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + shortcut)

    widths, blocks = {"resnet20": ([16, 32, 64], 3), "resnet18": ([64, 128, 256, 512], 2)}[arch]

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1, self.relu = conv(in_c, widths[0], 3, 1), nn.BatchNorm2d(widths[0]), nn.ReLU()
            inp = widths[0]
            for i, w in enumerate(widths):
                stride = 1 if i == 0 else 2
                layers = []
                for b in range(blocks):
                    layers.append(BasicBlock(inp, w, stride if b == 0 else 1))
                    inp = w
                setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(inp, 10)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            for i in range(len(widths)):
                x = getattr(self, f"layer{i + 1}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet()


def evaluate(npz, data_dir, arch, shape):
    try:
        import numpy as np
        import torch
    except ImportError as e:
        skip(e)
    torch.set_num_threads(2)
    c, h, w = (int(v) for v in shape.split("x"))
    model = build(arch, c)
    weights = np.load(npz)
    state = {k: torch.from_numpy(np.array(weights[k])) for k in weights.files}
    model.load_state_dict(state, strict=True)  # raises on a missing, unexpected or misshapen tensor
    model.eval()
    images, labels = idx(os.path.join(data_dir, "t10k-images-idx3-ubyte")), idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte"))
    n = int.from_bytes(images[4:8], "big")
    x = np.frombuffer(images, np.uint8, offset=16).reshape(n, c, h, w).astype(np.float32) * np.float32(1.0 / 255.0)
    y = torch.from_numpy(np.frombuffer(labels, np.uint8, offset=8).astype(np.int64))
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x[i:i + 250])) for i in range(0, n, 250)])
    loss = torch.nn.functional.cross_entropy(logits.double(), y, reduction="mean").item()
    acc = (logits.argmax(1) == y).double().mean().item()
    print(json.dumps({"test_accuracy": acc, "test_loss": loss, "images": n, "tensors": len(state)}))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6 and sys.argv[1] == "eval":
        evaluate(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
