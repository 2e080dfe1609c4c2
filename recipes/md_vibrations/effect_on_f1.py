"""How much the vibration model changes what the shipped networks see: F1 with Debye vs the CHGNet table.

Issue 17, item 2. Series of ``benchmarks/eval_conditions.py``'s ``table1-50kV`` recipe (thesis sample
recipe and Table 1 microscope, 50 keV, 0-2 graphene layers, temperature drawn in 100-600 K, seed 2026:
disjoint from the training seeds) are simulated twice from the very same draws (structures, temperatures,
phonon seeds, microscopes, noise generators): once with the Debye model the networks were trained on
(θ_D = 580 K for every element) and once with the packaged coordination table ``mos2-chgnet``
(:func:`napari_hrtem.simulation.vibrations.packaged_table`, σ scaled as sqrt(T / 300 K)). Both are scored
like ``eval_conditions.py``: atomic F1 within 0.5 Å, pooled over the series, per network and for their
consensus, overall and per class.

Run (one thread is enough)::

    OMP_NUM_THREADS=1 .venv/bin/python recipes/md_vibrations/effect_on_f1.py [--n 30] [--size 128]
        [--csv PATH] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from eval_conditions import CLASSES, CONDITIONS, DEFAULT_SEED, score_condition

from napari_hrtem.models.registry import available_networks
from napari_hrtem.simulation.imaging import (
    draw_microscope_parameters,
    draw_sampling,
    exit_wave,
    focal_series,
)
from napari_hrtem.simulation.parameters import CODE_SIMULATION_DEFAULTS
from napari_hrtem.simulation.structures import random_sample
from napari_hrtem.simulation.vibrations import draw_temperature, frozen_phonon_sigmas, packaged_table


def simulate(n: int, size: int, seed: int, table) -> tuple[list, dict]:
    """The series of ``eval_conditions.simulate_condition`` for ``table1-50kV`` with ``vibrations=table`` (None:
    Debye), each series from its own generator ``default_rng([seed, 0, k])`` (its dose noise from
    ``default_rng([seed, 0, k, 1])``) so that both models get the very same structures, temperatures,
    phonon seeds and microscopes (not the same series as ``eval_conditions.py``, whose one generator runs on).

    Returns the series and the mean per-atom σ (Å) per element over all the samples' atoms.
    """
    condition = CONDITIONS["table1-50kV"]
    index = list(CONDITIONS).index(condition.name)
    ranges = condition.ranges()
    settings = dict(
        energy=condition.energy,
        max_wave_sampling=CODE_SIMULATION_DEFAULTS["wave_sampling"],
        slice_thickness=CODE_SIMULATION_DEFAULTS["slice_thickness"],
        phonon_configs=CODE_SIMULATION_DEFAULTS["phonon_configs"],
    )
    shape = (size, size)
    items, sigma_sums = [], {}
    for k in range(n):
        # one generator per series, and the dose noise from its own: Poisson sampling uses a number of draws that
        # depends on the intensities, so with one shared generator the next series would differ between the models
        rng = np.random.default_rng([seed, index, k])
        noise = np.random.default_rng([seed, index, k, 1])
        sampling = draw_sampling(rng, ranges)
        layers = int(rng.integers(condition.graphene_layers[0], condition.graphene_layers[1] + 1))
        sample = random_sample((size * sampling, size * sampling), rng, graphene_layers=layers, ranges=ranges)
        temperature = draw_temperature(rng, ranges)
        sig = frozen_phonon_sigmas(sample.atoms, temperature, table=table)
        symbols = np.array(sample.atoms.get_chemical_symbols())
        for el in np.unique(symbols):
            values = np.asarray(sig[el] if isinstance(sig, dict) else sig[symbols == el]) * np.ones(
                (symbols == el).sum()
            )
            total, count = sigma_sums.get(el, (0.0, 0))
            sigma_sums[el] = (total + float(values.sum()), count + len(values))
        wave = exit_wave(
            sample,
            shape,
            sampling,
            temperature=temperature,
            seed=int(rng.integers(2**31)),
            vibrations=table,
            **settings,
        )
        images = focal_series(wave, draw_microscope_parameters(rng, ranges=ranges), shape, rng=noise)
        items.append((np.asarray(images, np.float32), sampling, np.asarray(sample.sites), np.asarray(sample.classes)))
    return items, {el: total / count for el, (total, count) in sorted(sigma_sums.items())}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=30, help="series (default 30)")
    p.add_argument("--size", type=int, default=128, help="series edge in px (default 128)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"first seed (default {DEFAULT_SEED})")
    p.add_argument("--csv", help="also write the rows as CSV")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    everything = available_networks()
    networks = [everything[name] for name in ("unet", "unetpp", "msdnet") if name in everything]
    rows = []
    for model, table in (("Debye (580 K)", None), ("CHGNet table", packaged_table())):
        t0 = time.perf_counter()
        items, sigmas = simulate(args.n, args.size, args.seed, table)
        t1 = time.perf_counter()
        scores = score_condition(networks, items)
        n_sites = {c: int(sum((classes == k).sum() for *_, classes in items)) for k, c in enumerate(CLASSES)}
        print(
            f"{model}: {args.n} series simulated in {t1 - t0:.0f} s, predicted in {time.perf_counter() - t1:.0f} s; "
            f"mean σ per atom {', '.join(f'{el} {s:.4f} Å' for el, s in sigmas.items())}; true sites {n_sites}",
            flush=True,
        )
        for name, s in scores.items():
            rows.append(dict(vibrations=model, network=name, series=args.n, **s))
    print(f"\nAtomic F1 within 0.5 Å, pooled; table1-50kV, {args.n} series of {args.size}² px, seed {args.seed}")
    print("| vibrations | network | overall | " + " | ".join(CLASSES) + " |")
    print("| --- | --- | --- |" + " --- |" * len(CLASSES))
    for r in rows:
        print(
            f"| {r['vibrations']} | {r['network']} | {r['overall']:.3f} | "
            + " | ".join(f"{r[c]:.3f}" for c in CLASSES)
            + " |"
        )
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["vibrations", "network", "series", "overall", *CLASSES])
            writer.writeheader()
            for r in rows:
                writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return rows


if __name__ == "__main__":
    main()
