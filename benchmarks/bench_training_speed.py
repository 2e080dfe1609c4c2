"""Training images per second and inference time per megapixel of every registered architecture.

CPU, 1 thread (``torch.set_num_threads(1)``), the registry's default settings (plus MSD-nets of depth 48
and of the paper's w = 3, d = 50, k = 5). Training: batches of 8 focal series of 3 x 128 x 128, Adam,
cross-entropy, after one warm-up step. Inference: one 3 x 512 x 512 focal series, no gradients.
The MSD-nets are measured twice, side by side: their layer convolutions as one matrix product each
(``napari_hrtem.models.msdnet.CPU_TAPS``, the default) and as torch's (oneDNN's) dilated convolutions;
the ratio of their CPU times is printed. Both wall-clock and CPU time (``time.process_time``) are
printed: this machine is shared (2 cores, many jobs), so the wall-clock numbers are upper bounds and the
CPU times are the better measure of the work.

Usage: ``python benchmarks/bench_training_speed.py [--steps 3] [--size 128] [--infer-size 512]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_hrtem.models.registry import ARCHITECTURES, build_model, parameter_count


def measure(name, config, args) -> tuple[float, float]:
    """Print and return (training CPU s per image, inference CPU s per MP)."""
    model = build_model(name, **config)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(args.batch, 3, args.size, args.size)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 4, (args.batch, args.size, args.size)))

    def step():
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    step()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = args.steps * args.batch
    model.eval()
    z = torch.from_numpy(rng.normal(size=(1, 3, args.infer_size, args.infer_size)).astype(np.float32))
    with torch.no_grad():
        model(z[..., :64, :64])
        w0, c0 = time.perf_counter(), time.process_time()
        model(z)
        iwall, icpu = time.perf_counter() - w0, time.process_time() - c0
    mp = args.infer_size**2 / 1e6
    label = name + ("" if config == {} else "(" + ",".join(f"{k}={v}" for k, v in config.items()) + ")")
    print(
        f"{label:<40} {parameter_count(model):>8}  train {n / wall:6.2f} img/s wall, {n / cpu:6.2f} img/s CPU   "
        f"inference {iwall / mp:6.2f} s/MP wall, {icpu / mp:6.2f} s/MP CPU",
        flush=True,
    )
    return cpu / n, icpu / mp


def measure_msdnet(config, args):
    """The MSD-net with matrix-product convolutions and with torch's, side by side."""
    from napari_hrtem.models import msdnet

    times = {}
    for taps in (True, False):
        msdnet.CPU_TAPS = taps
        print("  convolutions:", "one matrix product per layer" if taps else "torch (oneDNN)", end="  ")
        times[taps] = measure("msdnet", config, args)
    msdnet.CPU_TAPS = True
    print(
        f"  torch / matrix product, CPU time: training {times[False][0] / times[True][0]:.1f}x, "
        f"inference {times[False][1] / times[True][1]:.1f}x"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--infer-size", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(
        f"CPU, 1 thread, shared machine; training batch {args.batch} x 3 x {args.size}^2, inference 3 x "
        f"{args.infer_size}^2"
    )
    print(f"{'architecture':<40} {'params':>8}")
    for name in ARCHITECTURES:
        if name != "msdnet":
            measure(name, {}, args)
    for config in ({}, dict(depth=48), dict(width=3, depth=50, kernel_size=5)):
        measure_msdnet(config, args)


if __name__ == "__main__":
    main()
