"""Torch batched synthesis vs the abTEM per-image path, side by side in one run.

A batch of 32 focal series (3 images, 128x128 px at 0.22 Å/px, Table-1 microscopes drawn
afresh) from the same exit waves, made three ways:

* ``imaging.focal_series`` per series: abTEM CTF, intensity and blur on the 0.044 Å simulation
  grid, numpy resampling and noise (the path the dataset generator uses);
* ``synthesis`` from the full-grid spectra (``band_limit(wave, inf)``);
* ``synthesis`` from band-limited spectra (default cut-off, 2.97 Å⁻¹ at 50 keV).

Prints the time per focal series, the speed-up over abTEM (target: >= 10x on CPU), the storage
of a wave, and for context the share of a U-Net training step (batch 8, 128x128, Adam) the
synthesis of that step's 8 series would take.

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_synthesis.py [--series 32] [--threads 1]
"""

import argparse
import os
import time

import numpy as np
import torch

from napari_hrtem.models.registry import build_model
from napari_hrtem.simulation.imaging import (
    draw_microscope_parameters,
    exit_wave,
    focal_series,
)
from napari_hrtem.simulation.structures import make_mos2_sample
from napari_hrtem.simulation.synthesis import WaveBank, band_limit


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def unet_step_time(steps=5):
    torch.manual_seed(0)
    model = build_model("unet", n_images=3, n_classes=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(8, 3, 128, 128)
    y = torch.randint(0, 4, (8, 128, 128))

    def step():
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    return best_of(lambda: [step() for _ in range(steps)], 1) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=32, help="focal series in the batch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape, sampling, n = (128, 128), 0.22, args.series
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, device cpu"
    )

    t0 = time.perf_counter()
    waves = [
        exit_wave(
            make_mos2_sample(shape[0] * sampling, graphene_layers=layers, seed=layers),
            shape,
            sampling,
            phonon_configs=1,
        )
        for layers in (0, 1)
    ]
    print(
        f"2 exit waves {waves[0].array.shape} at {waves[0].sampling} Å: {time.perf_counter() - t0:.1f} s (not timed below)"
    )
    t0 = time.perf_counter()
    limited = [band_limit(w) for w in waves]
    t_limit = (time.perf_counter() - t0) / len(waves)
    full = [band_limit(w, np.inf) for w in waves]
    print(
        f"band_limit: {t_limit * 1e3:.0f} ms per wave; cut-off {limited[0].cutoff:.2f} 1/Å; stored "
        f"{limited[0].spectrum.shape} vs {waves[0].array.shape} complex64 = "
        f"{limited[0].spectrum.nbytes / 1e6:.2f} vs {waves[0].array.nbytes / 1e6:.2f} MB "
        f"({waves[0].array.nbytes / limited[0].spectrum.nbytes:.1f}x smaller)"
    )

    rng = np.random.default_rng(0)
    params = [draw_microscope_parameters(rng) for _ in range(n)]
    indices = rng.integers(len(waves), size=n)

    t0 = time.perf_counter()
    reference = [
        focal_series(waves[i], p, shape, rng=np.random.default_rng(k)) for k, (i, p) in enumerate(zip(indices, params))
    ]
    t_abtem = time.perf_counter() - t0

    timings = {}
    for label, bank_waves in (("torch, full grid", full), ("torch, band-limited", limited)):
        bank = WaveBank(bank_waves, shape, device="cpu")
        gen = torch.Generator().manual_seed(0)
        bank.synthesize(indices[:2], params[:2], generator=gen)  # warm-up
        timings[label] = best_of(lambda bank=bank, gen=gen: bank.synthesize(indices, params, generator=gen))
        noise_free = bank.synthesize(indices[:1], params[:1], noise=False)[0].numpy()
    ref0 = focal_series(waves[indices[0]], params[0], shape, noise=False)
    agreement = np.abs(noise_free - ref0).max() / np.abs(ref0).max()
    assert all(r.shape == (3, *shape) for r in reference)

    print(f"\n{n} focal series (3 x {shape[0]}x{shape[1]} px, {sampling} Å/px, with noise), from the same exit waves:")
    print(f"{'path':>24} {'batch':>9} {'per series':>11} {'speed-up':>9}")
    print(f"{'abTEM per image (numpy)':>24} {t_abtem:8.2f}s {t_abtem / n * 1e3:9.1f}ms {1.0:8.1f}x")
    for label, t in timings.items():
        print(f"{label:>24} {t:8.2f}s {t / n * 1e3:9.1f}ms {t_abtem / t:8.1f}x")
    print(f"noise-free agreement band-limited torch vs abTEM path: max rel. error {agreement:.1e}")

    step = unet_step_time()
    print(f"\nU-Net training step (batch 8, 3x128x128, forward + backward + Adam): {step * 1e3:.0f} ms")
    for label, per_series in (
        ("abTEM per image", t_abtem / n),
        ("torch band-limited", timings["torch, band-limited"] / n),
    ):
        synth = 8 * per_series
        print(
            f"  synthesis of its 8 series, {label:>18}: {synth * 1e3:7.0f} ms = "
            f"{synth / (synth + step):5.1%} of the step"
        )


if __name__ == "__main__":
    main()
