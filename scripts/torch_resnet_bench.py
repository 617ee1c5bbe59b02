#!/usr/bin/env python3
"""PyTorch reference for `spottrain train --config configs/resnet20.ini` on Fashion-MNIST (CPU).

The same network as configs/resnet20.ini (He et al. 2016 CIFAR ResNet-20 with torchvision's
names: 3x3 conv 16 + BN + relu, three stages of 3 basic blocks at 16/32/64 channels,
stride 2 and a 1x1 conv + BN projection at the starts of stages 2 and 3, global average
pool, dense 10) and the same recipe: SGD lr 0.1, momentum 0.9, weight decay 5e-4 not on
BatchNorm or biases (train.wd_skip = bn,bias), linear warm-up for --warmup-steps, then
cosine decay to 0 over the run (--max-steps shortens
the run, and the schedule with it, as spottrain's --max-steps does); softmax cross-entropy; images scaled to [0, 1]; batch 128;
the training set shuffled every epoch. Data: the IDX files of --data-dir (Fashion-MNIST).

Trains --epochs epochs or --max-steps steps (whichever ends first) with --threads CPU
threads, prints one JSON line per epoch (and at the end) with the test accuracy, and the
training images/s (wall clock of the training steps only, evaluation excluded):
  {"impl": "torch-eager", "step": 469, "epoch": 1, "test_accuracy": 0.87, "images_per_s": ...}
A benchmark, never a test (scripts/resnet_bench.sh runs it beside spottrain).

Throughput mode, `--synthetic CxHxW` (scripts/bench_cpu.sh runs it beside `spottrain bench
--set model.input=CxHxW`): the same network built for C input channels and HxW images, the
same recipe, one fixed batch of random uint8 images scaled as spottrain's input (x * (1/255)
in float32, made inside each step like spottrain's gather) and random labels; --warmup steps,
then --steps timed steps (forward, backward, optimizer step and loss.item() each step, as
spottrain returns each step's loss), wall clock. Prints one JSON line:
  {"impl": "torch-eager", "input": "3x32x32", "batch": 128, "images_per_s": ..., "params": ...}
`--compare-inspect FILE` checks the network against a spottrain checkpoint instead: FILE is
`spottrain inspect` of one written with the same model.input; the same parameter names and
shapes, or exit 1 with the differences.
"""
import argparse
import gzip
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    """An IDX file (gzipped or not) as a numpy uint8 array of its shape."""
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(data_dir, split):
    """Images [N,1,28,28] float32 in [0,1] and labels [N] int64 of a split ('train'/'t10k')."""
    def pick(stem):
        for suffix in (".gz", ""):
            p = os.path.join(data_dir, stem + suffix)
            if os.path.exists(p):
                return p
        raise FileNotFoundError(os.path.join(data_dir, stem))
    x = read_idx(pick(f"{split}-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = read_idx(pick(f"{split}-labels-idx1-ubyte")).astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv-bn-relu-conv-bn + shortcut (projection when given), relu."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet20(nn.Module):
    """configs/resnet20.ini in PyTorch (the same state_dict names)."""

    def __init__(self, in_c=1, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin, layers = 16, []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(3):
                blocks.append(BasicBlock(cin, planes, stride if i == 0 else 1))
                cin = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def param_groups(model, wd):
    """Weight decay on conv/dense weights only (train.wd_skip = bn,bias)."""
    decay, skip = [], []
    for name, p in model.named_parameters():
        (skip if p.ndim == 1 else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": skip, "weight_decay": 0.0}]


def lr_at(step, total, base, warmup):
    """Linear warm-up over `warmup` steps, then cosine to 0 at `total` (step counts from 0)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * t))


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    """Test accuracy in eval mode (running BatchNorm statistics)."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return correct / len(x)


def parse_input(text):
    """'CxHxW' as (C, H, W), positive integers."""
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not CxHxW (e.g. 3x32x32)")
    if min(c, h, w) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': every dimension must be at least 1")
    return c, h, w


def synthetic(args):
    """Images/s of the training step on one fixed random batch (the throughput mode)."""
    c, h, w = args.synthetic
    model = ResNet20(in_c=c)
    model.train()  # BatchNorm on batch statistics, as spottrain's training step
    opt = torch.optim.SGD(param_groups(model, 5e-4), lr=args.lr, momentum=0.9)
    g = torch.Generator().manual_seed(args.seed)
    pixels = torch.randint(0, 256, (args.batch, c, h, w), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (args.batch,), generator=g)
    total = args.warmup + args.steps

    def step(s):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(s, total, args.lr, args.warmup_steps)
        x = pixels.to(torch.float32) * (1.0 / 255.0)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        return loss.item()

    for s in range(args.warmup):
        step(s)
    t0 = time.perf_counter()
    for s in range(args.warmup, total):
        last = step(s)
    dt = time.perf_counter() - t0
    cap = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")()
    print(json.dumps({"impl": "torch-eager", "input": "x".join(map(str, args.synthetic)), "batch": args.batch,
                      "steps": args.steps, "warmup": args.warmup, "images_per_s": args.steps * args.batch / dt,
                      "step_ms": dt * 1e3 / args.steps, "loss": last,
                      "params": sum(p.numel() for p in model.parameters()),
                      "param_tensors": len(list(model.parameters())), "threads": torch.get_num_threads(),
                      "cpu_capability": cap, "torch": torch.__version__}), flush=True)
    return 0


def compare_inspect(args):
    """The network's parameter names and shapes against `spottrain inspect` output (/params)."""
    c = args.synthetic[0] if args.synthetic else 1
    ours = {n: list(p.shape) for n, p in ResNet20(in_c=c).named_parameters()}
    theirs, inside = {}, False
    with open(args.compare_inspect) as f:
        for line in f:
            if line.startswith("/"):
                inside = line.startswith("/params:")
                continue
            m = re.match(r"\s+(\S+)\s+\[([0-9,]*)\]", line) if inside else None
            if m:
                theirs[m.group(1)] = [int(v) for v in m.group(2).split(",") if v]
    diff = sorted(f"{n}: spottrain {theirs.get(n, 'absent')}, PyTorch {ours.get(n, 'absent')}"
                  for n in set(ours) | set(theirs) if ours.get(n) != theirs.get(n))
    count = sum(math.prod(s) for s in ours.values())
    print(json.dumps({"same_parameters": not diff, "tensors": len(ours), "params": count,
                      "spottrain_tensors": len(theirs),
                      "spottrain_params": sum(math.prod(s) for s in theirs.values()), "differences": diff[:20]}))
    return 0 if theirs and not diff else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--warmup-steps", type=int, default=469)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--synthetic", type=parse_input, metavar="CxHxW",
                    help="throughput mode: images/s on random CxHxW images (no data set)")
    ap.add_argument("--steps", type=int, default=20, help="--synthetic: timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="--synthetic: untimed steps first")
    ap.add_argument("--compare-inspect", metavar="FILE",
                    help="compare the network (at --synthetic's channels) with `spottrain inspect` output")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.compare_inspect:
        return compare_inspect(args)
    if args.synthetic:
        if args.steps < 1 or args.warmup < 0 or args.batch < 1:
            ap.error("--steps and --batch must be at least 1, --warmup at least 0")
        return synthetic(args)
    xtr, ytr = load(args.data_dir, "train")
    xte, yte = load(args.data_dir, "t10k")
    model = ResNet20()
    opt = torch.optim.SGD(param_groups(model, 5e-4), lr=args.lr, momentum=0.9)
    per_epoch = (len(xtr) + args.batch - 1) // args.batch  # the last batch partial, as spottrain's
    total = per_epoch * args.epochs
    if args.max_steps > 0:
        total = min(total, args.max_steps)
    # as spottrain's: --max-steps shortens the run and the schedule spans the shortened run
    sched_total = total
    step, train_s = 0, 0.0
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(xtr))
        for b in range(per_epoch):
            if step >= total:
                break
            idx = perm[b * args.batch:(b + 1) * args.batch]
            t0 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = lr_at(step, sched_total, args.lr, args.warmup_steps)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            last = loss.item()
            train_s += time.perf_counter() - t0
            step += 1
        acc = evaluate(model, xte, yte)
        print(json.dumps({"impl": "torch-eager", "step": step, "epoch": epoch if step % per_epoch == 0 else
                          round(step / per_epoch, 3), "loss": last, "test_accuracy": acc,
                          "images_per_s": step * args.batch / train_s, "threads": torch.get_num_threads(),
                          "torch": torch.__version__}), flush=True)
        if step >= total:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
