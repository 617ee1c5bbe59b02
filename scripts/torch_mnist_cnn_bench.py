#!/usr/bin/env python3
"""PyTorch reference for `spottrain bench --config configs/mnist_cnn.ini` (--device cuda or cpu).

The same network (the Keras mnist_cnn example): conv 32 3x3 relu, conv 64 3x3 relu,
maxpool 2, dropout 0.25, flatten, dense 128 relu, dropout 0.5, dense 10, softmax
cross-entropy (mean over the batch); Adadelta (lr 1.0, rho 0.95, eps 1e-7). Synthetic
data on the GPU (no loading), timed with CUDA events over --steps steps after
--warmup steps, in eager mode and with torch.compile.

Precision: FP32 throughout by default (TF32 off for matmuls AND cuDNN convolutions, as
spottrain's cuBLAS products); --tf32 allows it (PyTorch's default for convolutions).
spottrain returns each step's loss to the host (one sync per step); --sync-loss does the
same here (loss.item() every step) for a like-for-like comparison.

On the CPU (--device cpu --threads N, torch.set_num_threads) the same steps are timed with
a wall clock; compare with `spottrain bench --threads N` at the same batch.

Prints one JSON object per (mode, batch) on stdout:
  {"impl": "torch-eager", "batch": 128, "images_per_s": ..., "step_ms": ..., "tflops": ...}
"""
import argparse
import json
import sys
import time

import torch
import torch.nn as nn


def train_flops_per_sample():
    """Forward + backward FLOPs as spottrain's model.c counts them (2 per multiply-add;
    backward = 2x forward, except the first layer, which has no input gradient)."""
    conv1 = 26 * 26 * 32 * 1 * 9
    conv2 = 24 * 24 * 64 * 32 * 9
    fc1 = 9216 * 128
    fc2 = 128 * 10
    return 2.0 * (conv1 * 2 + (conv2 + fc1 + fc2) * 3)


def make_model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(),
        nn.Conv2d(32, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def bench(mode, batch, steps, warmup, sync_loss, device):
    torch.manual_seed(1)
    model = make_model().to(device)
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    lossf = nn.CrossEntropyLoss()
    fwd = torch.compile(model) if mode == "compile" else model
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(fwd(x), y)
        loss.backward()
        opt.step()
        return loss.item() if sync_loss else loss

    cuda = device == "cuda"
    t_compile = time.perf_counter()
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t_compile = time.perf_counter() - t_compile
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    t0 = time.perf_counter()
    for _ in range(steps):
        last = step()
    if cuda:
        end.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(end) / steps
    else:
        ms = (time.perf_counter() - t0) * 1e3 / steps
    ips = batch / (ms / 1e3)
    return {
        "impl": "torch-" + mode,
        "batch": batch,
        "steps": steps,
        "images_per_s": ips,
        "step_ms": ms,
        "tflops": ips * train_flops_per_sample() / 1e12,
        "warmup_s": t_compile,
        "loss": float(last),
        "tf32": torch.backends.cudnn.allow_tf32,
        "sync_loss": sync_loss,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "threads": torch.get_num_threads(),
        "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--modes", nargs="+", choices=["eager", "compile"], default=["eager", "compile"])
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in matmuls and cuDNN convolutions")
    ap.add_argument("--sync-loss", action="store_true", help="loss.item() every step, as spottrain does")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (torch.set_num_threads; 0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_mnist_cnn_bench: no CUDA device", file=sys.stderr)
        return 77
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True
    for mode in args.modes:
        for b in args.batch:
            try:
                r = bench(mode, b, args.steps, args.warmup, args.sync_loss, args.device)
            except Exception as e:  # torch.compile can fail where Triton or a compiler is missing
                r = {"impl": "torch-" + mode, "batch": b, "error": f"{type(e).__name__}: {e}"[:300]}
            print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
