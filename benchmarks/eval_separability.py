"""How well can single S be told apart at all under 6 Å of amorphous carbon? (issue 17, stage 17)

Seen along [001], every site of the sulphur sublattice of MoS2 holds two S atoms (an S2 column), one
(single S, a vacancy) or none (the column is gone: a hole, or the flake's edge). The networks must
find single S between the two. Under amorphous carbon the carbon's own projected potential adds to
every column, and the three states overlap.

This benchmark measures that overlap with the positions given: an *oracle* column classifier, a
small CNN (:class:`PatchNet`) that sees a patch of the preprocessed focal series centred on a true
sulphur-sublattice site and says S2, single S or empty. It is trained on ``--series`` series per
seed (1 and 2) imaged from exit-wave stores (``--stores``, e.g. the round-20 stores ``c50v_r20``,
``t50_r20``, ``t80_r20``: 2-10 Å of carbon over 20-100 % of the field on half of the waves) and
scored on the cached series of ``eval_conditions.py`` (``contamination-6A``, ``table1-50kV``,
``80kV``): single-S F1 over the sulphur-sublattice sites, the decision threshold chosen on the
calibration draw (``--cal``, seed 9) and reported on it and on the held-out draw (``--held``, seed
2026), under the carbon patches and outside them (``eval_carbon_patches.py``'s split). It is an
estimate of what a detector could reach with perfect positions, not a bound: a larger network may do
better. Measured (docs: accuracy, stage 20): a 7.4 Å patch (``--half 16``), four times the channels
(``--width 64``) or half the training patches each change it by no more than 0.035, both ways.

With ``--consensus``, the shipped networks' consensus on the same ``contamination-6A`` series is taken
apart: its single-S calls that are right, those on an S2 column, on an empty sulphur site, or
elsewhere, and the true single S it calls S2, Mo, or misses. Run::

    .venv/bin/python benchmarks/eval_separability.py --stores DIR/c50v_r20.zarr DIR/t50_r20.zarr
        DIR/t80_r20.zarr --cal CAL --held HELD [--series 2400] [--epochs 4] [--half 10] [--width 32]
        [--consensus] [--tta]

About 12 min on 2 cores (patches 4.5 min, training 6 min, scoring 1 min); ``--consensus --tta`` adds
about 3 min (200 series of 128² px).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_carbon_patches import CONDITION, carbon_of, under_carbon

#: Classes of the oracle: the states of a sulphur-sublattice site.
STATES = ("S2", "S", "empty")

#: Conditions scored (eval_conditions.py's names); only the first has carbon.
CONDITIONS = (CONDITION, "table1-50kV", "80kV")


def empty_sulphur_sites(mo: np.ndarray, s_type: np.ndarray, lattice: float = 3.16) -> np.ndarray:
    """Sites of the sulphur sublattice that hold no column.

    Parameters
    ----------
    mo, s_type : numpy.ndarray
        ``(n, 2)`` and ``(m, 2)`` positions ``(y, x)`` of the Mo and of the S2 / S columns (any unit;
        ``lattice`` in the same unit).
    lattice : float
        In-plane lattice constant (3.16 Å for MoS2).

    Returns
    -------
    numpy.ndarray
        ``(k, 2)``: ``P + M_i - M_j`` for each S-type column ``P`` and two of its Mo neighbours (the
        six sulphur sites around ``P``), more than ``0.38 a`` from any column and with at least two Mo
        within ``0.73 a`` (on the flake), one per site.
    """
    from scipy.spatial import cKDTree

    if len(mo) < 2 or len(s_type) == 0:
        return np.zeros((0, 2))
    near = 0.73 * lattice  # between the Mo-S distance a/sqrt(3) and a
    dist, idx = cKDTree(mo).query(s_type, k=3, distance_upper_bound=near)
    found = []
    for i in range(len(s_type)):
        ms = [mo[j] for d, j in zip(dist[i], idx[i]) if np.isfinite(d)]
        found += [s_type[i] + ms[a] - ms[b] for a in range(len(ms)) for b in range(len(ms)) if a != b]
    sites = np.array(found, float).reshape(-1, 2)
    if len(sites) == 0:
        return sites
    free = cKDTree(np.concatenate([mo, s_type])).query(sites)[0] > 0.38 * lattice
    on_flake = np.array([len(j) for j in cKDTree(mo).query_ball_point(sites, near)]) >= 2
    sites = sites[free & on_flake]
    if len(sites) == 0:
        return sites
    groups = cKDTree(sites).query_ball_point(sites, 0.15 * lattice)
    return sites[[i for i, g in enumerate(groups) if min(g) == i]]


def patches(images: np.ndarray, yx_px: np.ndarray, half: int) -> np.ndarray:
    """``(n, N, 2 half + 1, 2 half + 1)`` float32 patches of an ``(N, H, W)`` series centred on the
    nearest pixels of ``(n, 2)`` ``(y, x)`` px (mirrored at the edges)."""
    images = np.asarray(images, np.float32)
    yx = np.clip(np.rint(np.asarray(yx_px, float).reshape(-1, 2)).astype(int), 0, np.array(images.shape[1:]) - 1)
    padded = np.pad(images, ((0, 0), (half, half), (half, half)), mode="symmetric")
    size = 2 * half + 1
    return np.array([padded[:, y : y + size, x : x + size] for y, x in yx], np.float32).reshape(
        -1, images.shape[0], size, size
    )


def PatchNet(n_images: int = 3, n_classes: int = 3, width: int = 32):
    """A small VGG-style CNN: three levels of two 3x3 conv + BatchNorm + ReLU (``width``, 2x, 4x
    channels), 2x2 max-pooling between them, global average pooling and a linear layer to
    ``n_classes`` logits (K. Simonyan, A. Zisserman, ICLR 2015, arXiv:1409.1556)."""
    from torch import nn

    def block(a, b):
        return [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1)]

    layers = []
    for i, (a, b) in enumerate(((n_images, width), (width, 2 * width), (2 * width, 4 * width))):
        layers += [*block(a, b), nn.BatchNorm2d(b), nn.ReLU()] + ([nn.MaxPool2d(2)] if i < 2 else [])
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, n_classes))


def training_patches(stores: list[str], n_series: int, seed: int, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Patches (float16) at every sulphur-sublattice site of ``n_series`` series imaged from the
    stores' exit waves (a third of the S2 columns: memory), and their states (0 S2, 1 S, 2 empty)."""
    from scipy import ndimage

    from napari_hrtem.training.datastore import load_exit_waves
    from napari_hrtem.training.trainer import exit_wave_bank

    bank = [item for store in stores for item in load_exit_waves(store)]
    synthesize = exit_wave_bank(bank, device="cpu")
    lattice_px = 3.16 / float(np.mean([item["sampling"] for item in bank]))  # MoS2's a, in px of the images
    rng = np.random.default_rng(seed)
    out, states = [], []
    for _ in range(max(1, n_series // 16)):
        images, labels = synthesize(16, rng)
        for series, label in zip(images, labels):
            centres = []
            for code in (0, 1, 2):  # Mo, S2, S disks of the class map
                comp, n = ndimage.label(label == code)
                c = ndimage.center_of_mass(np.ones_like(comp), comp, range(1, n + 1)) if n else []
                centres.append(np.array(c, float).reshape(-1, 2))
            mo, s2, single = centres
            empty = empty_sulphur_sites(mo, np.concatenate([s2, single]), lattice_px)  # to the stores' spread
            for points, state, share in ((s2, 0, 1 / 3), (single, 1, 1.0), (empty, 2, 1.0)):
                points = points[rng.random(len(points)) < share]
                out.append(patches(series, points, half).astype(np.float16))
                states.append(np.full(len(points), state))
    return np.concatenate(out), np.concatenate(states)


def train_oracle(x: np.ndarray, y: np.ndarray, epochs: int, batch: int = 256, width: int = 32):
    """:func:`PatchNet` trained with cross-entropy (AdamW, one-cycle learning rate 2e-3, random 90°
    turns and mirror images); returned in eval mode."""
    import torch

    torch.manual_seed(0)
    model = PatchNet(x.shape[1], len(STATES), width)
    steps = max(1, epochs * (len(x) // batch))
    optimizer = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps)
    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))
    rng = np.random.default_rng(0)
    start, done = time.time(), 0
    for epoch in range(epochs):
        model.train()
        order, total = rng.permutation(len(x)), 0.0
        for b in range(max(1, len(x) // batch)):
            if done == steps:
                break
            index = torch.from_numpy(order[b * batch : (b + 1) * batch])
            xb = torch.rot90(xt[index], int(rng.integers(4)), (2, 3))
            xb = torch.flip(xb, (3,)) if rng.random() < 0.5 else xb
            loss = torch.nn.functional.cross_entropy(model(xb), yt[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total, done = total + loss.item(), done + 1
        print(f"epoch {epoch}: loss {total / max(1, len(x) // batch):.4f}, {time.time() - start:.0f} s", flush=True)
    return model.eval()


def log_probabilities(model, x: np.ndarray) -> np.ndarray:
    """``(n, 3)`` log-probabilities of :data:`STATES`, averaged over the 8 symmetries of the pixel grid."""
    import torch

    xt = torch.from_numpy(np.asarray(x, np.float32))
    total = torch.zeros((len(xt), len(STATES)))
    with torch.inference_mode():
        for k in range(4):
            turned = torch.rot90(xt, k, (2, 3))
            for view in (turned, torch.flip(turned, (3,))):
                total += torch.cat([torch.log_softmax(model(view[i : i + 1024]), 1) for i in range(0, len(xt), 1024)])
    return (total / 8).numpy()


def scored_sites(items: list, carbon: list | None, half: int):
    """Patches at every true sulphur-sublattice site of the series, their states and whether each is
    under carbon (within 2 Å of a contamination atom)."""
    from napari_hrtem.analysis.filters import preprocess

    out, states, under = [], [], []
    for k, (images, sampling, true_yx, true_classes) in enumerate(items):
        s_type = true_yx[true_classes > 0]
        empty = empty_sulphur_sites(true_yx[true_classes == 0], s_type)
        yx = np.concatenate([s_type, empty])
        out.append(patches(preprocess(images, sampling), yx / sampling, half))
        states.append(np.concatenate([true_classes[true_classes > 0] - 1, np.full(len(empty), 2)]))
        under.append(under_carbon(yx, carbon[k], 2.0) if carbon is not None else np.zeros(len(yx), bool))
    return np.concatenate(out), np.concatenate(states), np.concatenate(under)


def f1(call: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(F1, precision, recall) of boolean calls."""
    tp = float(np.sum(call & truth))
    return 2 * tp / max(1.0, call.sum() + truth.sum()), tp / max(1.0, call.sum()), tp / max(1.0, truth.sum())


def single_s_score(log_p: np.ndarray) -> np.ndarray:
    """The oracle's evidence for single S: its log-probability less the larger of the other two."""
    return log_p[:, 1] - np.maximum(log_p[:, 0], log_p[:, 2])


def best_threshold(score: np.ndarray, truth: np.ndarray) -> float:
    grid = np.linspace(-6, 6, 241)
    return float(grid[np.argmax([f1(score > g, truth)[0] for g in grid])])


def consensus_breakdown(found_yx, found_classes, true_yx, true_classes, radius: float = 0.5) -> dict:
    """Where a consensus' single-S calls and the true single S go (one-to-one matching within
    ``radius`` Å): ``right``; calls on an S2 column, on a Mo column, on an empty sulphur site (within
    ``radius`` of one), elsewhere; true single S called S2, called Mo, missed."""
    from scipy.optimize import linear_sum_assignment

    found_yx, true_yx = np.asarray(found_yx, float).reshape(-1, 2), np.asarray(true_yx, float).reshape(-1, 2)
    found_classes, true_classes = np.asarray(found_classes), np.asarray(true_classes)
    out = dict.fromkeys(("right", "on S2", "on Mo", "on empty site", "elsewhere", "as S2", "as Mo", "missed"), 0)
    match = np.full(len(found_yx), -1)
    if len(found_yx) and len(true_yx):
        d = np.linalg.norm(found_yx[:, None] - true_yx[None], axis=2)
        rows, cols = linear_sum_assignment(np.where(d < radius, d, 1e6))
        ok = d[rows, cols] < radius
        match[rows[ok]] = cols[ok]
    empty = empty_sulphur_sites(true_yx[true_classes == 0], true_yx[true_classes > 0])
    for i in np.flatnonzero(found_classes == 2):
        if match[i] >= 0:
            key = ("on Mo", "on S2", "right")[int(true_classes[match[i]])]
        elif len(empty) and np.min(np.linalg.norm(empty - found_yx[i], axis=1)) < radius:
            key = "on empty site"
        else:
            key = "elsewhere"
        out[key] += 1
    matched = {int(j): i for i, j in enumerate(match) if j >= 0}
    for j in np.flatnonzero(true_classes == 2):
        if j not in matched:
            out["missed"] += 1
        elif found_classes[matched[j]] != 2:
            out[("as Mo", "as S2")[int(found_classes[matched[j]])]] += 1
    return out


def main(argv=None) -> None:
    import eval_conditions as bench
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stores", nargs="+", required=True, help="exit-wave stores to train the oracle on")
    p.add_argument("--cal", required=True, help="eval_conditions.py series cache of the calibration draw (seed 9)")
    p.add_argument("--held", required=True, help="series cache of the held-out draw (seed 2026)")
    p.add_argument("--series", type=int, default=2400, help="training series per seed (1 and 2)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--half", type=int, default=10, help="patch half size, px (10: 21 px, 4.7 Å)")
    p.add_argument("--width", type=int, default=32, help="the oracle's first-level channels (32: 288k parameters)")
    p.add_argument("--n", type=int, default=100, help="series per condition in the caches")
    p.add_argument("--consensus", action="store_true", help="also take the shipped consensus apart")
    p.add_argument("--tta", action="store_true", help="the networks with test-time augmentation")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    parts = [training_patches(args.stores, args.series, seed, args.half) for seed in (1, 2)]
    x, y = np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])
    print(f"training patches: {dict(zip(STATES, np.bincount(y, minlength=3).tolist()))}", flush=True)
    model = train_oracle(x, y, args.epochs, width=args.width)
    del x, y
    draws = {9: args.cal, 2026: args.held}
    contaminated = {}  # the contamination-6A series per draw, for the consensus below
    print("\n| condition | draw | single-S F1 (precision, recall) | under carbon | outside |")
    print("| --- | --- | --- | --- | --- |")
    for name in CONDITIONS:
        scored = {}
        for seed, cache in draws.items():
            if name == CONDITION:
                items, carbon = carbon_of(args.n, 128, seed, cache)
                contaminated[seed] = items
            else:
                items, carbon = bench.load_or_simulate(bench.CONDITIONS[name], args.n, 128, seed, cache), None
            x, states, under = scored_sites(items, carbon, args.half)
            scored[seed] = (single_s_score(log_probabilities(model, x)), states == 1, under)
        threshold = best_threshold(*scored[9][:2])
        for seed, (score, truth, under) in scored.items():
            cells = [f1(score > threshold, truth)]
            if under.any():
                cells += [f1(score[under] > threshold, truth[under]), f1(score[~under] > threshold, truth[~under])]
            text = [f"{a:.3f} ({b:.2f}, {c:.2f})" for a, b, c in cells] + ["", ""][: 3 - len(cells)]
            print(f"| {name} | seed {seed} | " + " | ".join(text) + " |", flush=True)
    if args.consensus:
        from napari_hrtem.analysis.inference import predict_all
        from napari_hrtem.models.registry import shipped_networks

        networks = shipped_networks(50e3)
        print(f"\nconsensus (the package's rule) on {CONDITION}: single-S calls and true single S")
        for seed, items in contaminated.items():
            total: dict = {}
            for images, sampling, true_yx, true_classes in items:
                *_, last = predict_all(networks, images, sampling, test_time_augmentation=args.tta)
                agreed = last["consensus"]
                for key, value in consensus_breakdown(agreed.yx, agreed.classes, true_yx, true_classes).items():
                    total[key] = total.get(key, 0) + value
            print(f"seed {seed}: {total}", flush=True)


if __name__ == "__main__":
    main()
