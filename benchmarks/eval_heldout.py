"""Atomic F1 of every shipped network and of their consensus on fresh held-out simulated focal series.

Each network calls columns at its own column probability threshold (model card). Samples follow the thesis recipe (MoS2 with vacancies and holes, random rotation) and microscope
parameters drawn from the thesis' Table 1; half are bare MoS2, half on 1-6 graphene layers, scored
separately. Radius 0.5 Å.

Run:  .venv/bin/python benchmarks/eval_heldout.py [N_PER_GROUP] [SEED]
"""

import sys

import numpy as np

from napari_hrtem.imaging import draw_microscope_parameters, exit_wave, focal_series
from napari_hrtem.inference import predict_all
from napari_hrtem.metrics import atomic_f1, summarize
from napari_hrtem.models.registry import available_networks
from napari_hrtem.structures import random_sample


def main(n: int = 20, seed: int = 2024):
    rng = np.random.default_rng(seed)
    nets = list(available_networks().values())
    shape = (128, 128)
    everything: dict = {}
    for group, layers in (("bare", lambda: 0), ("graphene 1-6 layers", lambda: int(rng.integers(1, 7)))):
        per_series: dict = {}
        for _ in range(n):
            sampling = float(rng.uniform(0.215, 0.235))
            sample = random_sample((shape[0] * sampling, shape[1] * sampling), rng, graphene_layers=layers())
            wave = exit_wave(sample, shape, sampling, temperature=float(rng.uniform(100, 600)),
                             seed=int(rng.integers(2**31)))
            images = focal_series(wave, draw_microscope_parameters(rng), shape, rng=rng)
            *_, last = predict_all(nets, images, sampling)
            for name, sites in [*last["results"].items(), ("consensus", last["consensus"])]:
                per_series.setdefault(name, []).append(
                    atomic_f1(sites.yx, sites.classes, sample.sites, sample.classes, radius=0.5))
        _report(f"{group}: {n} focal series, 128x128 px, Table 1 microscope, seed {seed}", per_series)
        for name, scores in per_series.items():
            everything.setdefault(name, []).extend(scores)
    _report(f"all: {2 * n} focal series", everything)


def _report(title, per_series):
    print(f"\n{title}")
    for name, scores in per_series.items():
        pooled = summarize(scores)
        print(f"  {name:>10}: " + "  ".join(f"{c} {v['f1']:.3f}" for c, v in pooled.items() if isinstance(v, dict))
              + f"  RMS {pooled['overall']['rms']:.3f} Å  (10th percentile per series {pooled['f1_p10']:.3f})", flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
