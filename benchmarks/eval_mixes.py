"""Score every mix of two or more network sets, one network per slot, on the held-out series of
``eval_conditions.py``: which networks of which set make the best consensus (issue 17).

Each set lists its networks in the same slot order (e.g. U-Net, U-Net++, MSD-net); every choice of
one network per slot is scored as a consensus (:func:`napari_hrtem.analysis.consensus.consensus`,
a majority) with pooled atomic F1 within 0.5 Å. Every network predicts each series once::

    .venv/bin/python benchmarks/eval_mixes.py --cache HELDOUT --n 100 --tta \\
        --conditions table1-50kV 80kV contamination-6A \\
        --sets today=OLD/unet.json,OLD/unetpp.json,OLD/msdnet.json r3=NEW/unet-r3.json,NEW/unetpp-r3.json,NEW/msdnet-r3.json

prints one row per mix and condition, ``today / r3 / today`` meaning the first set's network in
slot 1, the second's in slot 2, and so on. Sets may share a network (the same weight file under one
name): to score one new network in the shipped set, give the set the shipped networks of the other slots.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_conditions import CONDITIONS, DEFAULT_SEED, load_or_simulate, parse_sets, resolve_set

from napari_hrtem.analysis.consensus import consensus
from napari_hrtem.analysis.inference import predict_all
from napari_hrtem.analysis.metrics import atomic_f1, combine_scores
from napari_hrtem.simulation.structures import CLASSES


def score_mixes(sets: dict[str, list], items: list, tta: bool = False, radius: float = 0.5) -> dict:
    """``{"a / b / a": {"overall": F1, "Mo": ..., "S2": ..., "S": ...}}`` for every mix of ``sets``
    (label -> networks, all of one length) on ``items`` (:func:`eval_conditions.load_or_simulate`)."""
    slots = {len(nets) for nets in sets.values()}
    if len(slots) != 1:
        raise SystemExit("eval_mixes.py: every set needs the same number of networks (one per slot)")
    n_slots = slots.pop()
    unique: dict[str, object] = {}  # a network named in several sets predicts once
    for net in (net for nets in sets.values() for net in nets):
        seen = unique.setdefault(net.name, net)
        if Path(seen.weights).resolve() != Path(net.weights).resolve():
            raise SystemExit(
                f"eval_mixes.py: the name {net.name!r} appears twice for different weights; give each network its own name"
            )
    networks = list(unique.values())
    per_mix: dict[tuple, list] = {}
    for images, sampling, sites_true, classes_true in items:
        *_, last = predict_all(networks, images, sampling, test_time_augmentation=tta)
        sites = {
            (label, slot): last["results"][net.name] for label, nets in sets.items() for slot, net in enumerate(nets)
        }
        for mix in itertools.product(sets, repeat=n_slots):
            agreed = consensus({f"{label}:{slot}": sites[(label, slot)] for slot, label in enumerate(mix)})
            per_mix.setdefault(mix, []).append(
                atomic_f1(agreed.yx, agreed.classes, sites_true, classes_true, radius=radius)
            )
    pooled = {}
    for mix, scores in per_mix.items():
        combined = combine_scores(scores)
        pooled[" / ".join(mix)] = {c: float(combined[c]["f1"]) for c in ("overall", *CLASSES)}
    return pooled


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="+", required=True, help="LABEL=card1,card2,... (two or more, same length)")
    p.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS))
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--cache", help="folder of the simulated series (eval_conditions.py --cache)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (8 symmetries)")
    a = p.parse_args(argv)
    specs = parse_sets(a.sets, None)
    print("| mix | condition | overall | " + " | ".join(CLASSES) + " |")
    print("| --- | --- | --- |" + " --- |" * len(CLASSES))
    for name in a.conditions:
        condition = CONDITIONS[name]
        sets = {label: resolve_set(members, condition.energy) for label, members in specs.items()}
        items = load_or_simulate(condition, a.n, a.size, a.seed, a.cache)
        for mix, scores in score_mixes(sets, items, tta=a.tta).items():
            cells = " | ".join(f"{scores[c]:.4f}" for c in ("overall", *CLASSES))
            print(f"| {mix} | {name} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
