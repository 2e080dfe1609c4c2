"""Preprocessing time of a focal series (support filter and local normalization), as the networks see it.

Side by side in one run, on the same series: the local normalization's Gaussian blur as scipy's direct
kernel (``scipy.ndimage.gaussian_filter``, mode ``reflect``: the package before 2026-12-04) and as the
package does it now (:func:`napari_hrtem.analysis.filters.gaussian_blur`: for images of at most 512 px a
side, two matrix products with scipy's filter of the identity). Every batch of a training run makes and
preprocesses its series afresh, so at 128² px this is most of a CPU training step. The outputs are
compared too (largest difference, in units of the normalized image).

Series: 3 frames of a simulated MoS2 focal series at 0.2 Å/px (a lattice the support filter looks for),
1 thread, CPU time (``time.process_time``): the machine is shared.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_preprocess.py [--sizes 128 256 512] [--repeat 20]``.
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np


def _scipy_blur(images, sigma):
    from scipy.ndimage import gaussian_filter

    images = np.asarray(images)
    if images.dtype != np.float32:
        images = images.astype(np.float64)
    return gaussian_filter(images, (0, sigma, sigma), mode="reflect")


def _series(size: int, seed: int) -> np.ndarray:
    from napari_hrtem.simulation.imaging import draw_microscope_parameters, exit_wave, focal_series
    from napari_hrtem.simulation.structures import random_sample

    sampling = 0.2
    rng = np.random.default_rng(seed)
    sample = random_sample((size * sampling, size * sampling), rng, graphene_layers=1)
    wave = exit_wave(sample, (size, size), sampling, phonon_configs=1, max_wave_sampling=0.1)
    return np.asarray(focal_series(wave, draw_microscope_parameters(rng), (size, size), rng=rng), np.float32)


def _time(images: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    from napari_hrtem.analysis.filters import preprocess

    out = preprocess(images, 0.2)  # warm-up (and the blur matrices' cache)
    start = time.process_time()
    for _ in range(repeat):
        out = preprocess(images, 0.2)
    return (time.process_time() - start) / repeat, out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args(argv)
    print("| series | scipy direct blur (s) | matrix blur (s) | ratio | largest difference |")
    print("| --- | --- | --- | --- | --- |")
    for size in args.sizes:
        images = _series(size, seed=size)
        with mock.patch("napari_hrtem.analysis.filters.gaussian_blur", _scipy_blur):
            before, reference = _time(images, args.repeat)
        after, out = _time(images, args.repeat)
        diff = float(np.abs(out - reference).max())
        print(f"| 3 x {size}² | {before:.4f} | {after:.4f} | {before / after:.1f}x | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
