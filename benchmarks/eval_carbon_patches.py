"""Atomic F1 under the amorphous-carbon patches and outside them, on the ``contamination-6A`` series of
``eval_conditions.py`` (issue 17: single S under 6 Å of carbon).

The condition covers half of the field with 6 Å of amorphous carbon in irregular patches. A true or
found column counts as *under carbon* where a contamination atom (a carbon atom above the top S plane)
lies within ``--radius`` Å (default 2) of it laterally, else *outside*; atomic F1 (within 0.5 Å) is
pooled over the series for each part separately, for every network and the consensus (the package's
rule, ``auto``), with the single-S precision and recall. The contamination atoms are kept as the
condition's draw is simulated (``on_sample``), or, for series already in the cache of
``eval_conditions.py``, by replaying the draw (checked against the cache), and cached beside the series
as ``..._carbon.npz``. Run::

    .venv/bin/python benchmarks/eval_carbon_patches.py --cache FOLDER [--n 100] [--seed 9] [--tta]
        [--networks unet unetpp msdnet path/to/card.json]

Replaying 100 series takes about 8 min on one core (the exit waves are simulated again); predicting,
as in ``eval_conditions.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_conditions import CONDITIONS, load_or_simulate, simulate_condition

from napari_hrtem.analysis.inference import predict_all
from napari_hrtem.analysis.metrics import atomic_f1, combine_scores
from napari_hrtem.models.registry import load_network, shipped_networks

CONDITION = "contamination-6A"
PARTS = ("under carbon", "outside")


def contamination_yx(sample) -> np.ndarray:
    """``(m, 2)`` (y, x) Å of the sample's contamination atoms: carbon more than 1 Å above (beam side of)
    its top S plane (the support lies below the flake)."""
    positions = sample.atoms.positions
    symbols = np.array(sample.atoms.get_chemical_symbols())
    top = positions[symbols == "S", 2].min() if np.any(symbols == "S") else np.inf
    return positions[(symbols == "C") & (positions[:, 2] < top - 1.0)][:, 1::-1].copy()


def carbon_of(n: int, size: int, seed: int, cache: str | None) -> tuple[list, list[np.ndarray]]:
    """The condition's series (as ``eval_conditions.py`` makes and caches them) and each one's
    contamination atoms ``(m, 2)`` (y, x) Å, kept as the series are simulated (replayed once when they
    are read from the cache) and cached as ``..._carbon.npz``."""
    condition = CONDITIONS[CONDITION]
    path = Path(cache) / f"{CONDITION}_{n}x{size}px_seed{seed}_carbon.npz" if cache else None
    kept: list[np.ndarray] = []

    def keep(sample) -> None:
        kept.append(contamination_yx(sample))

    items = load_or_simulate(condition, n, size, seed, cache, on_sample=keep)  # kept: when simulated here
    if not kept:  # the series were read from the cache
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as f:
                return items, [f[str(k)] for k in range(n)]
        replayed = simulate_condition(condition, n, size, seed, on_sample=keep)
        if not all(np.array_equal(a[0], b[0]) for a, b in zip(replayed, items)):
            raise SystemExit(f"the replayed series differ from the cached ones in {cache}: not the same simulator")
    if path is not None:
        np.savez(path, **{str(k): yx for k, yx in enumerate(kept)})
    return items, kept


def under_carbon(yx: np.ndarray, carbon: np.ndarray, radius: float) -> np.ndarray:
    """``(k,)`` bool: a contamination atom within ``radius`` Å (laterally) of each ``(k, 2)`` position."""
    from scipy.spatial import cKDTree

    yx = np.asarray(yx, float).reshape(-1, 2)
    if len(yx) == 0 or len(carbon) == 0:
        return np.zeros(len(yx), bool)
    return cKDTree(carbon).query_ball_point(yx, radius, return_length=True) > 0


def score_parts(networks: list, items: list, carbon: list, radius: float = 2.0, tta: bool = False) -> dict:
    """``{name: {part: combine_scores(...)}}`` for every network and ``"consensus"``, and
    ``{"single-S columns": {part: count}}``."""
    per: dict = {}
    counts = dict.fromkeys(PARTS, 0)
    for (images, sampling, true_yx, true_classes), atoms in zip(items, carbon):
        *_, last = predict_all(networks, images, sampling, test_time_augmentation=tta)
        found = {**last["results"], "consensus": last["consensus"]}  # the package's rule (auto)
        true_under = under_carbon(true_yx, atoms, radius)
        counts["under carbon"] += int(np.sum(true_classes[true_under] == 2))
        counts["outside"] += int(np.sum(true_classes[~true_under] == 2))
        for name, sites in found.items():
            site_under = under_carbon(sites.yx, atoms, radius)
            classes = np.asarray(sites.classes)
            for part, t, s in (("under carbon", true_under, site_under), ("outside", ~true_under, ~site_under)):
                score = atomic_f1(sites.yx[s], classes[s], true_yx[t], true_classes[t])
                per.setdefault(name, {}).setdefault(part, []).append(score)
    scores = {name: {part: combine_scores(s) for part, s in parts.items()} for name, parts in per.items()}
    return {**scores, "single-S columns": counts}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=9, help="the draw (default 9: the calibration draw)")
    p.add_argument("--cache", help="series cache of eval_conditions.py (and of the carbon positions)")
    p.add_argument("--networks", nargs="+", help="names or model cards (default: the shipped 50 kV set)")
    p.add_argument("--radius", type=float, default=2.0, help="Å: a column is under carbon within this of an atom")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (8 symmetries)")
    args = p.parse_args(argv)
    networks = [load_network(n) for n in args.networks] if args.networks else shipped_networks(50e3)
    items, carbon = carbon_of(args.n, args.size, args.seed, args.cache)
    scores = score_parts(networks, items, carbon, args.radius, args.tta)
    counts = scores.pop("single-S columns")
    print(f"{CONDITION}, seed {args.seed}, {len(items)} series; single-S columns: {counts}")
    print("| network | " + " | ".join(f"{part}: overall / single S (precision, recall)" for part in PARTS) + " |")
    print("| --- | --- | --- |")
    for name, parts in scores.items():
        cells = [
            f"{s['overall']['f1']:.4f} / {s['S']['f1']:.3f} ({s['S']['precision']:.2f}, {s['S']['recall']:.2f})"
            for s in (parts[part] for part in PARTS)
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
