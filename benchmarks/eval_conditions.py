"""Atomic F1 of networks and their consensus on freshly simulated held-out series, per condition (issue 17).

Every condition is a recipe of focal series simulated here, from a seed disjoint from the training
seeds, never used in training: the thesis sample recipe and Table 1 microscope draws
(``table1.yaml``), changed in one thing per condition:

* ``table1-50kV``: 50 keV, 0-2 graphene layers (the in-distribution case);
* ``80kV`` and ``300kV``: the same at that beam energy (exit wave and microscope);
* ``contamination-6A``: 50 keV with 6 Å of amorphous carbon (1.8-2.2 g/cm³) on top of the
  specimen, over half of the field in irregular patches (its atoms are not sites).

Multislice settings are those the shipped networks were trained with
(:data:`napari_hrtem.simulation.parameters.CODE_SIMULATION_DEFAULTS`), as in ``eval_heldout.py``.
Each network calls columns at its own threshold (model card); the consensus (a majority of the
chosen networks) is :func:`napari_hrtem.analysis.consensus.consensus` of their sites, by the package's
rule (``auto``: the learned rule for a shipped set whose combiner is shipped, the sum rule for any other set)
or, with ``--rules auto sum same-class``, by each rule side by side. Scores are atomic
F1 within 0.5 Å, per class and overall, pooled over the series of a condition (TP, FP, FN summed),
printed as one table (network × condition) with issue 17's targets marked met or missed.

Run::

    .venv/bin/python benchmarks/eval_conditions.py [--n 100] [--size 128] [--seed 2026]
        [--conditions table1-50kV 80kV ...] [--networks unet unetpp msdnet path/to/card.json]
        [--sets today=OLD/unet.json,OLD/unetpp.json,OLD/msdnet.json shipped=auto]
        [--cache FOLDER] [--csv PATH] [--tta] [--rules auto sum same-class] [--quick]

A *set* is scored as networks plus their consensus; ``auto`` is the shipped set that
``napari-hrtem predict`` picks for the condition's beam energy
(:func:`napari_hrtem.models.registry.shipped_networks`). Several ``--sets`` are scored side by side on
the same series, their rows named ``network (set)``. The default is one set, ``auto``.

``--cache`` keeps the simulated series (one ``.npz`` per condition, read without pickles), so
that a later run scores new networks on the very same series.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrtem.analysis.combiner import choose_rule
from napari_hrtem.analysis.consensus import RULES, consensus
from napari_hrtem.analysis.inference import predict_all
from napari_hrtem.analysis.metrics import atomic_f1, combine_scores
from napari_hrtem.models.registry import load_network, shipped_networks
from napari_hrtem.simulation.imaging import draw_microscope_parameters, draw_sampling, exit_wave, focal_series
from napari_hrtem.simulation.parameters import CODE_SIMULATION_DEFAULTS, load_parameter_ranges
from napari_hrtem.simulation.structures import random_sample
from napari_hrtem.simulation.vibrations import draw_temperature

#: Default first seed; each condition draws from ``default_rng([seed, index of the condition])``,
#: disjoint from the shipped networks' training and validation seeds (0-4, 1000: single integers).
DEFAULT_SEED = 2026

#: Columns of the table: overall F1, then the classes.
CLASSES = ("Mo", "S2", "S")


@dataclass(frozen=True)
class Target:
    """A done-when target of issue 17: ``who``'s F1 of ``column`` at least ``value``.

    ``who`` is ``"network"`` (every network), ``"consensus"``; ``value`` ``None`` means
    "at least the best network's".
    """

    who: str
    column: str
    value: float | None

    def label(self) -> str:
        """Short text, e.g. ``S≥0.95`` or ``overall≥best``."""
        return f"{self.column}≥{'best' if self.value is None else f'{self.value:g}'}"


@dataclass(frozen=True)
class Condition:
    """A recipe of held-out series: beam energy, support layers and contamination."""

    name: str
    description: str
    energy: float = 50e3
    graphene_layers: tuple[int, int] = (0, 2)
    contamination: dict = field(default_factory=dict)
    targets: tuple[Target, ...] = ()

    def ranges(self) -> dict:
        """The packaged parameter ranges (thesis Table 1) with this condition's changes."""
        ranges = load_parameter_ranges()
        ranges["microscope"]["energy"] = float(self.energy)
        ranges["sample"].update(self.contamination)
        return ranges


CONDITIONS = {
    c.name: c
    for c in (
        Condition(
            "table1-50kV",
            "Table 1 microscope, 50 keV, 0-2 graphene layers",
            targets=(
                Target("network", "overall", 0.99),
                Target("network", "S", 0.93),
                Target("consensus", "overall", None),
                Target("consensus", "S", 0.95),
            ),
        ),
        Condition(
            "80kV",
            "as table1-50kV at 80 keV",
            energy=80e3,
            targets=(Target("consensus", "overall", 0.995), Target("consensus", "S", 0.95)),
        ),
        Condition("300kV", "as table1-50kV at 300 keV", energy=300e3, targets=(Target("consensus", "overall", 0.97),)),
        Condition(
            "contamination-6A",
            "as table1-50kV with 6 Å amorphous carbon on top over half the field",
            contamination=dict(
                contamination_thickness=[6.0, 6.0],
                contamination_coverage=[0.5, 0.5],
                contamination_sides="top",
                contamination_density=[1.8, 2.2],
            ),
            targets=(Target("consensus", "overall", 0.95), Target("consensus", "S", 0.80)),
        ),
    )
}


def simulate_condition(
    condition: Condition,
    n: int,
    size: int,
    seed: int,
    phonon_configs: int | None = None,
    on_sample: Callable[[Any], None] | None = None,
) -> list:
    """``n`` fresh focal series of one condition.

    Parameters
    ----------
    condition : Condition
        The recipe.
    n, size : int
        Number of series and their edge in px.
    seed : int
        First seed; the series are drawn from ``default_rng([seed, index of the condition])``.
    phonon_configs : int, optional
        Frozen-phonon configurations (default: the training data's, 4).
    on_sample : callable, optional
        Called with each :class:`~napari_hrtem.simulation.structures.Sample` as it is made (the draws
        do not change), e.g. to keep where its contamination lies (``eval_carbon_patches.py``).

    Returns
    -------
    list of tuple
        ``(images (3, size, size), sampling Å/px, sites (k, 2) Å, classes (k,))`` per series.
    """
    rng = np.random.default_rng([seed, list(CONDITIONS).index(condition.name)])
    ranges = condition.ranges()
    settings = dict(
        energy=condition.energy,
        max_wave_sampling=CODE_SIMULATION_DEFAULTS["wave_sampling"],
        slice_thickness=CODE_SIMULATION_DEFAULTS["slice_thickness"],
        phonon_configs=phonon_configs or CODE_SIMULATION_DEFAULTS["phonon_configs"],
    )
    shape = (size, size)
    items = []
    for _ in range(n):
        sampling = draw_sampling(rng, ranges)
        layers = int(rng.integers(condition.graphene_layers[0], condition.graphene_layers[1] + 1))
        sample = random_sample((size * sampling, size * sampling), rng, graphene_layers=layers, ranges=ranges)
        if on_sample is not None:
            on_sample(sample)
        wave = exit_wave(
            sample,
            shape,
            sampling,
            temperature=draw_temperature(rng, ranges),
            seed=int(rng.integers(2**31)),
            **settings,
        )
        images = focal_series(wave, draw_microscope_parameters(rng, ranges=ranges), shape, rng=rng)
        items.append((np.asarray(images, np.float32), sampling, np.asarray(sample.sites), np.asarray(sample.classes)))
    return items


def load_or_simulate(
    condition: Condition,
    n: int,
    size: int,
    seed: int,
    cache: str | None,
    phonon_configs: int | None = None,
    on_sample: Callable[[Any], None] | None = None,
) -> list:
    """:func:`simulate_condition`, kept in ``cache`` (a folder, one ``.npz`` per condition and draw,
    read without pickles) so that other networks are scored on the very same series. ``on_sample``
    is passed on when the series are simulated (not when they are read from the cache)."""
    if cache is None:
        return simulate_condition(condition, n, size, seed, phonon_configs, on_sample)
    tag = f"_ph{phonon_configs}" if phonon_configs else ""
    path = Path(cache) / f"{condition.name}_{n}x{size}px_seed{seed}{tag}.npz"
    if not path.is_file():
        items = simulate_condition(condition, n, size, seed, phonon_configs, on_sample)
        arrays = {}
        for k, (images, sampling, sites, classes) in enumerate(items):
            arrays.update(
                {
                    f"{k}_images": images,
                    f"{k}_sampling": np.array(sampling),
                    f"{k}_sites": sites,
                    f"{k}_classes": classes,
                }
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, **arrays)
        partial.replace(path)
    with np.load(path, allow_pickle=False) as f:
        return [(f[f"{k}_images"], float(f[f"{k}_sampling"]), f[f"{k}_sites"], f[f"{k}_classes"]) for k in range(n)]


def consensus_name(rule: str, rules) -> str:
    """The row name of the consensus by ``rule``: ``"consensus"`` for the first of ``rules``, else
    ``"consensus, <rule> rule"``."""
    return "consensus" if rule == list(rules)[0] else f"consensus, {rule} rule"


def score_condition(
    networks: list,
    items: list,
    radius: float = 0.5,
    tta: bool = False,
    rules: tuple[str, ...] = ("auto",),
    per_series: dict | None = None,
) -> dict:
    """Pooled atomic F1 of every network and of their consensus on the series of one condition.

    ``rules``: the consensus rules (``"auto"`` or one of :data:`napari_hrtem.analysis.consensus.RULES`;
    :func:`napari_hrtem.analysis.combiner.choose_rule`) scored side by side on the same sites, the
    first named ``"consensus"``. ``per_series``, a dict, receives each row's per-series scores
    (:func:`napari_hrtem.analysis.metrics.atomic_f1`), for :func:`bootstrap_sd`.

    Returns
    -------
    dict
        ``{name: {"overall": F1, "Mo": F1, "S2": F1, "S": F1}}`` with the consensus rows last.
    """
    per_series = {} if per_series is None else per_series
    chosen = {r: choose_rule(networks, r) for r in rules}  # auto: the learned rule for a shipped set, else sum
    for images, sampling, sites_true, classes_true in items:
        *_, last = predict_all(networks, images, sampling, test_time_augmentation=tta)
        agreed = [
            (consensus_name(r, rules), consensus(last["results"], radius=radius, rule=rule, combiner=combiner))
            for r, (rule, combiner) in chosen.items()
        ]
        for name, sites in [*last["results"].items(), *agreed]:
            per_series.setdefault(name, []).append(
                atomic_f1(sites.yx, sites.classes, sites_true, classes_true, radius=radius)
            )
    pooled = {}
    for name, scores in per_series.items():
        combined = combine_scores(scores)
        pooled[name] = {column: float(combined[column]["f1"]) for column in ("overall", *CLASSES)}
    return pooled


def _resampled_sd(statistic: Callable[[np.ndarray], float], m: int, n: int, seed: int) -> float:
    """Standard deviation of ``statistic(indices)`` over ``n`` resamplings with replacement of ``m``
    series (NaN draws left out; NaN where every draw is)."""
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, m, m)) for _ in range(n)]
    values = [v for v in values if not math.isnan(v)]
    return float(np.std(values)) if values else math.nan


def bootstrap_sd(scores: list, column: str, n: int = 1000, seed: int = 0) -> float:
    """Standard deviation of the pooled F1 of ``column`` over the series resampled with replacement
    (``n`` bootstrap draws; B. Efron, R. J. Tibshirani, *An introduction to the bootstrap*, Chapman &
    Hall 1993, chapter 6): how far the table's figure could move with another draw of as many series."""
    return _resampled_sd(lambda idx: combine_scores([scores[i] for i in idx])[column]["f1"], len(scores), n, seed)


def paired_bootstrap(scores: list, reference: list, column: str = "overall", n: int = 1000, seed: int = 0):
    """The difference of pooled F1, ``scores`` minus ``reference`` (two rows scored on the very same
    series, in the same order), and its bootstrap standard deviation with the series resampled
    together (a paired bootstrap; B. Efron, R. J. Tibshirani, *An introduction to the bootstrap*,
    Chapman & Hall 1993, chapter 6). Far smaller than either row's own spread where the two rows err on
    the same columns, so it is what "the consensus is at least the best network" is read against.

    Parameters
    ----------
    scores, reference : list of dict
        Per-series :func:`napari_hrtem.analysis.metrics.atomic_f1` of the two rows, series in the same order.
    column : str
        ``"overall"`` or a class name.
    n, seed : int
        Bootstrap draws and the seed of their generator.

    Returns
    -------
    tuple of float
        ``(difference, standard deviation)``.

    Raises
    ------
    ValueError
        If the rows have different numbers of series.
    """
    if len(scores) != len(reference):
        raise ValueError(f"paired rows need the same series: {len(scores)} against {len(reference)}")

    def diff(idx):
        return (
            combine_scores([scores[i] for i in idx])[column]["f1"]
            - combine_scores([reference[i] for i in idx])[column]["f1"]
        )

    return float(diff(range(len(scores)))), _resampled_sd(diff, len(scores), n, seed)


def best_network(scores: dict) -> str | None:
    """The name of the network (not a consensus row) with the highest pooled overall F1 in ``scores``
    (``{name: {"overall": F1, ...}}``), or ``None`` where there is none."""
    alone = [name for name in scores if not name.startswith("consensus")]
    return max(alone, key=lambda name: scores[name]["overall"]) if alone else None


def check_targets(condition: Condition, scores: dict) -> dict:
    """``{name: "overall≥0.99 met; S≥0.93 missed"}`` for the rows a target of ``condition`` applies to."""
    agreed = [name for name in scores if name.startswith("consensus")]
    best_name = best_network(scores)
    best = math.nan if best_name is None else scores[best_name]["overall"]
    marks: dict = {}
    for target in condition.targets:
        names = agreed if target.who == "consensus" else [name for name in scores if name not in agreed]
        goal = best if target.value is None else target.value
        for name in names:
            value = scores[name][target.column]
            verdict = "no sites" if math.isnan(value) or math.isnan(goal) else "met" if value >= goal else "missed"
            marks.setdefault(name, []).append(f"{target.label()} {verdict}")
    return {name: "; ".join(m) for name, m in marks.items()}


def table_rows(results: dict) -> list[dict]:
    """Rows (network × condition) of ``{condition: (Condition, n, {set: scores})}``: set by set, its
    networks first (in the order met), its consensus last; with several sets a row's network is
    ``name (set)``. A network of ``auto`` may differ between conditions (one set per energy)."""
    rows = []
    sets = list(dict.fromkeys(label for _, _, by_set in results.values() for label in by_set))
    for label in sets:
        names = [name for _, _, by_set in results.values() for name in by_set.get(label, {})]
        names = list(dict.fromkeys(names))
        names = [n for n in names if not n.startswith("consensus")] + [n for n in names if n.startswith("consensus")]
        for name in names:
            for condition, n, by_set in results.values():
                scores = by_set.get(label, {})
                if name not in scores:
                    continue
                marks = check_targets(condition, scores)
                shown = name if len(sets) == 1 else f"{name} ({label})"
                rows.append(
                    dict(network=shown, condition=condition.name, series=n, **scores[name], targets=marks.get(name, ""))
                )
    return rows


def parse_sets(specs: list[str] | None, networks: list[str] | None) -> dict:
    """``{label: "auto" or [names or card paths]}`` from ``--sets`` and ``--networks``."""
    sets: dict = {}
    if networks:
        sets["chosen"] = list(networks)
    for spec in specs or []:
        label, _, members = spec.partition("=")
        if not label or not members:
            raise SystemExit(f"eval_conditions.py: --sets takes LABEL=auto or LABEL=net1,net2,..., got {spec!r}")
        sets[label] = "auto" if members == "auto" else [m for m in members.split(",") if m]
    return sets or {"shipped": "auto"}


def resolve_set(members, energy: float) -> list:
    """The networks of a set for a condition's beam energy (eV)."""
    if members == "auto":
        return shipped_networks(energy)
    try:
        return [load_network(name) for name in members]
    except ValueError as exc:  # NetworkError: an unknown name, a missing or broken card
        raise SystemExit(f"eval_conditions.py: {exc}") from None


def format_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (overall F1 to 4 decimals, where the targets differ in the fourth;
    the classes' to 3)."""
    head = ["network", "condition", "series", "overall", *CLASSES, "targets (issue 17)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [r["network"], r["condition"], str(r["series"])]
        cells += [f"{r['overall']:.4f}", *(f"{r[c]:.3f}" for c in CLASSES)]
        lines.append("| " + " | ".join([*cells, r["targets"]]) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str) -> None:
    """The rows as CSV (F1 to 4 decimals)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["network", "condition", "series", "overall", *CLASSES, "targets"])
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="series per condition (default 100: about 11 min on 2 cores)")
    p.add_argument("--size", type=int, default=128, help="series edge in px (default 128)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"first seed (default {DEFAULT_SEED})")
    p.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS), help="default: all")
    p.add_argument("--networks", nargs="+", help="names or model-card paths: one set (default: --sets shipped=auto)")
    p.add_argument(
        "--sets",
        nargs="+",
        metavar="LABEL=NETS",
        help="sets scored side by side: LABEL=auto (the shipped set for each condition's beam energy) or "
        "LABEL=name,card.json,... (rows named 'network (LABEL)')",
    )
    p.add_argument("--cache", help="folder keeping the simulated series (.npz) for later runs")
    p.add_argument(
        "--tta", action="store_true", help="test-time augmentation: every network averaged over the 8 grid symmetries"
    )
    p.add_argument(
        "--rules",
        nargs="+",
        choices=["auto", *RULES],
        default=["auto"],
        help="consensus rules scored side by side on the same sites (default: auto, the package's: the learned "
        "rule for a shipped set, the sum rule for any other)",
    )
    p.add_argument("--csv", help="also write the table as CSV")
    p.add_argument(
        "--bootstrap",
        action="store_true",
        help="also print each row's bootstrap standard deviation (series resampled, 1000 draws) of the overall "
        "and single-S F1",
    )
    p.add_argument("--quick", action="store_true", help="1 series of 64 px per condition, 1 phonon configuration")
    args = p.parse_args(argv)
    if args.n < 1 or args.size < 32:
        p.error("--n must be at least 1 and --size at least 32")
    return args


def main(argv=None) -> list[dict]:
    """Simulate (or read) the series, score the networks and their consensus, print the table.

    Returns
    -------
    list of dict
        The table's rows: ``network``, ``condition``, ``series``, ``overall``, ``Mo``, ``S2``,
        ``S`` (pooled F1) and ``targets``.
    """
    args = parse_args(argv)
    n, size, phonons = (1, 64, 1) if args.quick else (args.n, args.size, None)
    sets = parse_sets(args.sets, args.networks)
    for members in sets.values():  # unknown names fail before any simulation
        if members != "auto":
            resolve_set(members, 50e3)
    results, spread = {}, {}
    for name in args.conditions:
        condition = CONDITIONS[name]
        t0 = time.perf_counter()
        items = load_or_simulate(condition, n, size, args.seed, args.cache, phonons)
        t1 = time.perf_counter()
        by_set = {}
        for label, members in sets.items():
            kept = spread.setdefault((name, label), {})
            networks = resolve_set(members, condition.energy)
            by_set[label] = score_condition(networks, items, tta=args.tta, rules=tuple(args.rules), per_series=kept)
        results[name] = (condition, n, by_set)
        print(
            f"{name}: {n} series of {size}² px ({condition.description}); "
            f"simulated/read in {t1 - t0:.0f} s, predicted in {time.perf_counter() - t1:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    rows = table_rows(results)
    print(
        f"\nAtomic F1 within 0.5 Å, pooled per condition; {n} series of {size}² px per condition, seed {args.seed}"
        + (" (quick: 1 phonon configuration)" if args.quick else "")
        + ("; test-time augmentation (8 symmetries)" if args.tta else "")
    )
    print(format_table(rows))
    if args.bootstrap:
        print("\nBootstrap standard deviation of the pooled F1 (series resampled with replacement, 1000 draws)")
        print("| network | condition | overall | S |\n| --- | --- | --- | --- |")
        for (condition_name, label), per in spread.items():
            for network, scores in per.items():
                shown = network if len(sets) == 1 else f"{network} ({label})"
                sd = [bootstrap_sd(scores, column) for column in ("overall", "S")]
                print(f"| {shown} | {condition_name} | ± {sd[0]:.4f} | ± {sd[1]:.3f} |")
        print("\nConsensus minus the best network overall, paired over the same series (1000 draws)")
        print("| consensus | condition | best network | difference |\n| --- | --- | --- | --- |")
        for (condition_name, label), per in spread.items():
            best = best_network(results[condition_name][2][label])  # the pooled scores of the table
            if best is None:
                continue
            for agreed in (name for name in per if name.startswith("consensus")):
                d, sd = paired_bootstrap(per[agreed], per[best])
                shown = agreed if len(sets) == 1 else f"{agreed} ({label})"
                print(f"| {shown} | {condition_name} | {best} | {d:+.4f} ± {sd:.4f} |")
    if args.csv:
        write_csv(rows, args.csv)
    return rows


if __name__ == "__main__":
    main()
