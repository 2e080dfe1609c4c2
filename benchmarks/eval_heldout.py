"""Atomic F1 of every shipped network and of their consensus on fresh held-out simulated focal series.

Each network calls columns at its own column probability threshold (model card). Samples follow the thesis recipe (MoS2 with vacancies and holes, random rotation) and microscope
parameters drawn from the thesis' Table 1; half are bare MoS2, half on 1-6 graphene layers, scored
separately. Radius 0.5 Å.

Run:  .venv/bin/python benchmarks/eval_heldout.py [N_PER_GROUP] [SEED] [--cache=FOLDER]
(--cache keeps the simulated series, to score other networks on the very same ones.)
"""

import sys
from pathlib import Path

import numpy as np

from napari_hrtem.analysis.inference import predict_all
from napari_hrtem.analysis.metrics import atomic_f1, summarize
from napari_hrtem.models.registry import available_networks
from napari_hrtem.simulation.imaging import draw_microscope_parameters, exit_wave, focal_series
from napari_hrtem.simulation.structures import random_sample


def simulate_heldout(n: int, seed: int) -> dict:
    """``{group: [(images (3, 128, 128), sampling, sites (k, 2) Å, classes (k,))]}``: n series per group."""
    rng = np.random.default_rng(seed)
    shape = (128, 128)
    groups = {}
    for group, layers in (("bare", lambda: 0), ("graphene 1-6 layers", lambda: int(rng.integers(1, 7)))):
        items = groups[group] = []
        for _ in range(n):
            sampling = float(rng.uniform(0.215, 0.235))
            sample = random_sample((shape[0] * sampling, shape[1] * sampling), rng, graphene_layers=layers())
            wave = exit_wave(
                sample, shape, sampling, temperature=float(rng.uniform(100, 600)), seed=int(rng.integers(2**31))
            )
            images = focal_series(wave, draw_microscope_parameters(rng), shape, rng=rng)
            items.append((images, sampling, np.asarray(sample.sites), np.asarray(sample.classes)))
    return groups


def load_or_simulate(n: int, seed: int, cache: str | None) -> dict:
    """:func:`simulate_heldout`, kept in ``cache`` (a folder, one ``.npz`` per draw, read without
    pickles) to score other networks on the very same series."""
    if cache is None:
        return simulate_heldout(n, seed)
    path = Path(cache) / f"heldout_{n}_{seed}.npz"
    if not path.is_file():
        groups = simulate_heldout(n, seed)
        arrays = {}
        for g, (group, items) in enumerate(groups.items()):
            arrays[f"group{g}"] = np.array(group)
            for k, (images, sampling, sites, classes) in enumerate(items):
                arrays.update(
                    {
                        f"{g}_{k}_images": images,
                        f"{g}_{k}_sampling": np.array(sampling),
                        f"{g}_{k}_sites": sites,
                        f"{g}_{k}_classes": classes,
                    }
                )
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
    with np.load(path, allow_pickle=False) as f:
        return {
            str(f[f"group{g}"]): [
                (f[f"{g}_{k}_images"], float(f[f"{g}_{k}_sampling"]), f[f"{g}_{k}_sites"], f[f"{g}_{k}_classes"])
                for k in range(n)
            ]
            for g in range(2)
        }


def main(n: int = 20, seed: int = 2024, cache: str | None = None):
    nets = list(available_networks().values())
    everything: dict = {}
    for group, items in load_or_simulate(n, seed, cache).items():
        per_series: dict = {}
        for images, sampling, sites_true, classes_true in items:
            *_, last = predict_all(nets, images, sampling)
            for name, sites in [*last["results"].items(), ("consensus", last["consensus"])]:
                per_series.setdefault(name, []).append(
                    atomic_f1(sites.yx, sites.classes, sites_true, classes_true, radius=0.5)
                )
        _report(f"{group}: {n} focal series, 128x128 px, Table 1 microscope, seed {seed}", per_series)
        for name, scores in per_series.items():
            everything.setdefault(name, []).extend(scores)
    _report(f"all: {2 * n} focal series", everything)


def _report(title, per_series):
    print(f"\n{title}")
    for name, scores in per_series.items():
        pooled = summarize(scores)
        print(
            f"  {name:>10}: "
            + "  ".join(f"{c} {v['f1']:.3f}" for c, v in pooled.items() if isinstance(v, dict))
            + f"  RMS {pooled['overall']['rms']:.3f} Å  (10th percentile per series {pooled['f1_p10']:.3f})",
            flush=True,
        )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--cache=")]
    caches = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--cache=")]
    main(*(int(a) for a in args[:2]), cache=caches[0] if caches else None)
