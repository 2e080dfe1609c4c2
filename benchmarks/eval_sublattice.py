"""How well the sublattice check points at the consensus' label errors, on the held-out series of
``eval_conditions.py`` (issue 17).

The consensus of the shipped set for each condition's energy is matched to the truth (nearest true
column within 0.5 Å); its sites are right, wrong (a true column given another class; a *swap* when
Mo is called S2 or S2 Mo) or false (no true column). The sublattice check
(:func:`napari_hrtem.analysis.sublattice.sublattice_conflicts`) marks sites with a neighbour of their
own sublattice closer than 2.49 Å; a swapped patch is marked along its edge, so a swap counts as
*pointed at* when a marked site lies within ``--near`` Å (default 3.7: about two nearest-neighbour
distances). One row per condition::

    .venv/bin/python benchmarks/eval_sublattice.py --cache HELDOUT --n 60 --seed 9 --tta

``series with swaps: marked`` counts the series with at least one swapped consensus site and at least
one mark; ``series without swaps: marked`` the false alarms (a series with no swap but a mark).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_conditions import CONDITIONS, DEFAULT_SEED, load_or_simulate

from napari_hrtem.analysis.inference import predict_all
from napari_hrtem.analysis.sublattice import sublattice_conflicts

#: Columns of the printed table, in order.
COLUMNS = (
    "series",
    "consensus sites",
    "wrong",
    "swaps",
    "false",
    "marked",
    "marked and wrong or false",
    "swaps within near of a mark",
    "series with swaps: marked",
    "series without swaps: marked",
)


def check_series(networks: list, items: list, tta: bool = False, near: float = 3.7) -> dict:
    """Counts of :data:`COLUMNS` (as keys) for the consensus of ``networks`` on ``items``
    (:func:`eval_conditions.load_or_simulate`)."""
    from scipy.spatial import cKDTree

    out = dict.fromkeys(COLUMNS, 0)
    swapped_series = clean_series = 0
    for images, sampling, yx_true, classes_true in items:
        *_, last = predict_all(networks, images, sampling, test_time_augmentation=tta)
        cons = last["consensus"]
        mark = sublattice_conflicts(cons)
        d, j = cKDTree(yx_true).query(cons.yx) if len(cons.yx) else (np.zeros(0), np.zeros(0, int))
        matched = d <= 0.5
        truth = np.where(matched, np.asarray(classes_true, int)[np.minimum(j, len(classes_true) - 1)], -1)
        wrong = matched & (truth != cons.classes)
        swap = wrong & np.isin(truth, [0, 1]) & np.isin(cons.classes, [0, 1])  # Mo <-> S2
        false = ~matched
        pointed = np.zeros(len(cons.yx), bool)
        if mark.any() and swap.any():
            pointed[swap] = cKDTree(cons.yx[mark]).query(cons.yx[swap])[0] <= near
        out["series"] += 1
        out["consensus sites"] += len(cons.yx)
        out["wrong"] += int(wrong.sum())
        out["swaps"] += int(swap.sum())
        out["false"] += int(false.sum())
        out["marked"] += int(mark.sum())
        out["marked and wrong or false"] += int((mark & (wrong | false)).sum())
        out["swaps within near of a mark"] += int(pointed.sum())
        if swap.any():
            swapped_series += 1
            out["series with swaps: marked"] += int(mark.any())
        else:
            clean_series += 1
            out["series without swaps: marked"] += int(mark.any())
    out["series with swaps: marked"] = f"{out['series with swaps: marked']} of {swapped_series}"
    out["series without swaps: marked"] = f"{out['series without swaps: marked']} of {clean_series}"
    return out


def main(argv=None) -> int:
    from napari_hrtem.models.registry import shipped_networks

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS))
    p.add_argument("--n", type=int, default=100, help="series per condition")
    p.add_argument("--size", type=int, default=128, help="px")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--cache", help="folder of the simulated series (eval_conditions.py --cache)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (8 symmetries)")
    p.add_argument("--near", type=float, default=3.7, help="Å: a swap within this of a mark is pointed at")
    a = p.parse_args(argv)
    print("| condition | networks | " + " | ".join(COLUMNS) + " |")
    print("| --- | --- |" + " --- |" * len(COLUMNS))
    for name in a.conditions:
        condition = CONDITIONS[name]
        items = load_or_simulate(condition, a.n, a.size, a.seed, a.cache)
        networks = shipped_networks(condition.energy)
        counts = check_series(networks, items, tta=a.tta, near=a.near)
        names = ", ".join(net.name for net in networks)
        print(f"| {name} | {names} | " + " | ".join(str(counts[c]) for c in COLUMNS) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
