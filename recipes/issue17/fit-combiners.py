"""Train the consensus combiners of the shipped network sets (issue 17, round 17: the learned consensus).

For each shipped set (50-80 kV, 80 kV and 300 kV): ``N`` fresh focal series per training condition, simulated
by the benchmark's simulator (``benchmarks/eval_conditions.py``; seed 31, a draw used nowhere else),
the set's networks run on them with test-time augmentation at their own thresholds, and a
:class:`napari_hrtem.analysis.combiner.Combiner` fitted to their sites
(:func:`napari_hrtem.analysis.combiner.fit_combiner`). With ``--calibration FOLDER`` (the series cache
of the calibration draw, seed 9) the learned and the sum rule are scored there side by side and the
figures go into the combiner's ``info["validation"]``. The held-out draw (seed 2026) is never read.

Training conditions: the 50-80 kV set learns from Table 1 at 50 and at 80 kV and from Table 1 at 50 kV
with amorphous carbon over part of the field at the networks' training range (2-10 Å thick over
20-80 % of the field, ``carbon-2-10A``: not the benchmark's 6 Å over half); the 80 kV set (round 24) from
300 series of Table 1 at 80 kV and from ``carbon-2-10A`` at 80 kV; the 300 kV set from Table 1 at 300 kV.

Usage::

    python recipes/issue17/fit-combiners.py DATA_DIR [--n 100] [--seed 31] [--calibration CAL_SERIES]
        [--install] [--only consensus.json]

writes ``DATA_DIR/consensus.json``, ``DATA_DIR/consensus-80kv.json`` and ``DATA_DIR/consensus-300kv.json`` (``--install``: also into
``src/napari_hrtem/models/consensus/``, where :func:`~napari_hrtem.analysis.combiner.shipped_combiner`
finds them). Series are cached in ``DATA_DIR/series``; 100 series per condition take about 8 min to
simulate and 2 min to predict on one CPU core.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import eval_conditions as bench  # noqa: E402

from napari_hrtem.analysis.combiner import COMBINER_DIR, fit_combiner  # noqa: E402
from napari_hrtem.analysis.consensus import consensus  # noqa: E402
from napari_hrtem.analysis.inference import predict_all  # noqa: E402
from napari_hrtem.analysis.metrics import atomic_f1, combine_scores  # noqa: E402
from napari_hrtem.models.registry import load_network, shipped_networks  # noqa: E402

# The networks' training range of carbon, for fitting only (appended after the benchmark's conditions,
# so that their draws and seeds stay as they are).
bench.CONDITIONS.setdefault(
    "carbon-2-10A",
    bench.Condition(
        "carbon-2-10A",
        "as table1-50kV with 2-10 Å of amorphous carbon on top over 20-80 % of the field",
        contamination=dict(
            contamination_thickness=[2.0, 10.0],
            contamination_coverage=[0.2, 0.8],
            contamination_sides="top",
            contamination_density=[1.8, 2.2],
        ),
    ),
)

bench.CONDITIONS.setdefault(
    "carbon-2-10A-80kV",
    dataclasses.replace(
        bench.CONDITIONS["carbon-2-10A"], name="carbon-2-10A-80kV", description="as carbon-2-10A at 80 keV", energy=80e3
    ),
)

#: Per combiner: (file, beam energy picking the shipped set in eV or the set's network names, training
#: conditions (a name: ``--n`` series; ``(name, n)``: n series), calibration conditions). A new set is named
#: (its combiner is what makes it a set).
SETS = (
    ("consensus.json", 50e3, ("table1-50kV", "80kV", "carbon-2-10A"), ("table1-50kV", "80kV", "contamination-6A")),
    ("consensus-80kv.json", ("msdnet", "unet-80kv", "unetpp-80kv"), (("80kV", 300), "carbon-2-10A-80kV"), ("80kV",)),
    ("consensus-300kv.json", 300e3, ("300kV",), ("300kV",)),
)


def sites_of(networks, items):
    """Per series: (sites of every network, true positions, true classes), test-time augmentation on."""
    for images, sampling, true_yx, true_classes in items:
        *_, last = predict_all(networks, images, sampling, test_time_augmentation=True, rule="sum")
        yield last["results"], true_yx, true_classes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("--n", type=int, default=100, help="series per training condition")
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--calibration", help="series cache of the calibration draw (seed 9, 100 per condition)")
    p.add_argument("--install", action="store_true", help="copy the combiners into the package")
    p.add_argument(
        "--only", choices=[s[0] for s in SETS], help="fit this combiner only (the set whose networks changed)"
    )
    args = p.parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    for filename, which, train_conditions, cal_conditions in SETS:
        if args.only and filename != args.only:
            continue
        networks = [load_network(n) for n in which] if isinstance(which, tuple) else shipped_networks(which)
        examples = []
        drawn = {}
        for entry in train_conditions:
            name, n = entry if isinstance(entry, tuple) else (entry, args.n)
            drawn[name] = n
            items = bench.load_or_simulate(bench.CONDITIONS[name], n, 128, args.seed, str(args.data / "series"))
            examples += list(sites_of(networks, items))
            print(f"{filename}: {name}, {len(items)} series", flush=True)
        info = dict(
            train=dict(
                conditions=list(drawn),
                series_per_condition=drawn if len(set(drawn.values())) > 1 else next(iter(drawn.values())),
                seed=args.seed,
                size_px=128,
                simulator="benchmarks/eval_conditions.py",
                test_time_augmentation=True,
                recipe="recipes/issue17/fit-combiners.py",
            ),
        )
        combiner = fit_combiner(examples, networks, info=info)
        validation = {}
        for name in cal_conditions if args.calibration else ():
            items = bench.load_or_simulate(bench.CONDITIONS[name], 100, 128, 9, args.calibration)
            scores: dict[str, list] = {"sum": [], "learned": []}
            for results, true_yx, true_classes in sites_of(networks, items):
                for rule in scores:
                    agreed = consensus(results, rule=rule, combiner=combiner)
                    scores[rule].append(atomic_f1(agreed.yx, agreed.classes, true_yx, true_classes))
            validation[name] = {
                rule: {c: round(float(combine_scores(s)[c]["f1"]), 4) for c in ("overall", "Mo", "S2", "S")}
                for rule, s in scores.items()
            }
            print(f"{filename}: calibration {name}: {validation[name]}", flush=True)
        combiner.info["validation"] = dict(
            draw="calibration, seed 9, 100 series of 128² px per condition, test-time augmentation",
            atomic_f1=validation,
        )
        path = combiner.save(args.data / filename)
        print(f"wrote {path}", flush=True)
        if args.install:
            shutil.copyfile(path, COMBINER_DIR / filename)
            print(f"installed {COMBINER_DIR / filename}")


if __name__ == "__main__":
    main()
