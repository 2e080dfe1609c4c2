"""Does test-time augmentation by the square grid's symmetries pay? (issue 17 item 3)

Each network runs on the 8 images of a focal series under the dihedral group of the pixel grid
(rotations by 90° and mirror images; the networks were trained with these augmentations, and
a lattice at any in-plane orientation), its logits mapped back and averaged, against the plain
single pass. Atomic F1 (0.5 Å, pooled per condition) of each network and of their consensus, on
the held-out series of ``eval_conditions.py`` (its ``--cache`` files), side by side in one run,
with the inference CPU time of both.

Run::

    .venv/bin/python benchmarks/bench_tta.py --cache FOLDER [--n 50] [--networks unet unetpp msdnet]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _eval_conditions():
    spec = importlib.util.spec_from_file_location("eval_conditions", HERE / "eval_conditions.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> dict:
    import torch

    from napari_hrtem.analysis.consensus import consensus
    from napari_hrtem.analysis.inference import predict_sites
    from napari_hrtem.analysis.metrics import atomic_f1, combine_scores
    from napari_hrtem.models.fast import inference_model, symmetrized
    from napari_hrtem.models.registry import load_network

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="eval_conditions.py --cache folder (series are simulated if absent)")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--networks", nargs="+", default=["unet", "unetpp", "msdnet"])
    p.add_argument("--conditions", nargs="+", default=None)
    args = p.parse_args(argv)
    ec = _eval_conditions()
    torch.set_num_threads(1)
    nets = [load_network(n) for n in args.networks]
    plain = {net.name: inference_model(net.load("cpu"), "float32") for net in nets}
    models = {"plain": plain, "8 symmetries": {k: symmetrized(m) for k, m in plain.items()}}
    out: dict = {}
    print("| condition | network | plain: overall / S | 8 symmetries: overall / S | CPU s plain / 8 symmetries |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.conditions or list(ec.CONDITIONS):
        items = ec.load_or_simulate(ec.CONDITIONS[name], args.n, args.size, args.seed, args.cache)
        scores: dict = {}
        seconds: dict = {}
        for mode, chosen in models.items():
            t0 = time.process_time()
            for images, sampling, sites_true, classes_true in items:
                results = {}
                for net in nets:
                    sites, _ = predict_sites(net, images, sampling, model=chosen[net.name], precision="float32")
                    results[net.name] = sites
                results["consensus"] = consensus({k: v for k, v in results.items()})
                for who, sites in results.items():
                    f1 = atomic_f1(sites.yx, sites.classes, sites_true, classes_true, radius=0.5)
                    scores.setdefault((mode, who), []).append(f1)
            seconds[mode] = time.process_time() - t0
        for who in [*(n.name for n in nets), "consensus"]:
            cells = []
            for mode in models:
                c = combine_scores(scores[(mode, who)])
                out[(name, who, mode)] = (float(c["overall"]["f1"]), float(c["S"]["f1"]))
                cells.append("{:.4f} / {:.3f}".format(*out[(name, who, mode)]))
            print(
                f"| {name} | {who} | {cells[0]} | {cells[1]} | {seconds['plain']:.0f} / {seconds['8 symmetries']:.0f} |"
            )
        sys.stdout.flush()
    return out


if __name__ == "__main__":
    main()
