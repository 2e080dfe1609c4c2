"""Command line: ``napari-hrtem dataset | train | predict | evaluate | networks | simulate | view``.

Errors in the user's input (files, options) print one line ``napari-hrtem: error: ...`` and exit
with status 2; nothing is written in that case.
"""

from __future__ import annotations

import argparse
import sys


def _progress(label: str):
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=label, unit="series", file=sys.stderr)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def cmd_dataset(args) -> int:
    from .datasets import write_dataset
    from .validation import check_simulation_request

    check_simulation_request(args.size, samples=args.samples, images_per_sample=args.images_per_sample,
                             phonon_configs=args.phonon_configs)

    recipe = write_dataset(args.out, args.samples, images_per_sample=args.images_per_sample,
                           shape=(args.size, args.size), seed=args.seed, phonon_configs=args.phonon_configs,
                           progress=_progress("simulating"))
    print(f"wrote {args.out}: {recipe}")
    return 0


def cmd_train(args) -> int:
    import tempfile
    from pathlib import Path

    import numpy as np

    from .datasets import load_dataset, write_dataset
    from .models.registry import ARCHITECTURES, user_networks_dir
    from .training import save_network, train
    from .validation import load_dataset_checked as load_dataset  # noqa: F811 - clear errors for bad files

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    paths = list(args.dataset)
    if not paths:
        path = Path(tempfile.mkdtemp()) / "train.npz"
        write_dataset(path, args.samples, seed=args.seed, progress=_progress("simulating training set"))
        paths = [path]
    sets = [load_dataset(p) for p in paths]
    data = dict(images=np.concatenate([d["images"] for d in sets]), labels=np.concatenate([d["labels"] for d in sets]))
    validation = load_dataset(args.validation) if args.validation else None
    config = dict(ARCHITECTURES[args.architecture][2]) if args.architecture in ARCHITECTURES else {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        config[key] = int(value)
    sampling = float(np.mean(np.concatenate([d["sampling"] for d in sets])))
    result = None
    for event in train(args.architecture, data, validation=validation, steps=args.steps, batch_size=args.batch_size,
                       lr=args.lr, seed=args.seed, config=config, device=args.device,
                       validate_every=args.validate_every, validation_limit=None):
        if event.get("done"):
            result = event
            break
        line = f"step {event['step']}/{event['steps']}  {event['seconds']:.0f} s"
        if "loss" in event:
            line += f"  loss {event['loss']:.4f}  lr {event['lr']:.2e}"
        if "validation" in event:
            v = event["validation"]
            line += "  val F1 " + " ".join(f"{c} {v[c]['f1']:.3f}" for c in (*v.keys(),) if isinstance(v[c], dict))
        print(line, flush=True)
    card = dict(
        architecture=args.architecture, config=config, classes=["Mo", "S2", "S"], n_images=int(data["images"].shape[1]),
        defocus_step=50.0, sampling=round(sampling, 4), normalization_distance=12.0, support_filter=True,
        support_lattice_constant=2.46, material="MoS2",
        training=dict(command=" ".join(["napari-hrtem", *sys.argv[1:]]) if sys.argv else "", datasets=[
            dict(file=Path(p).name, recipe=d["recipe"], focal_series=int(len(d["images"]))) for p, d in zip(paths, sets)],
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, seconds=round(result["seconds"])),
        validation=None if result["validation"] is None else dict(
            recipe=validation["recipe"], radius=0.5, scores=result["validation"]),
    )
    out = Path(args.out) if args.out else user_networks_dir()
    path = save_network(result["model"], out, args.name or args.architecture, card)
    print(f"wrote {path} and {path.with_suffix('.pt')}")
    return 0


def _networks(names):
    from .models.registry import available_networks

    nets = available_networks()
    if not nets:
        raise ValueError("no networks found (the shipped weights are missing from the installation)")
    if not names:
        return list(nets.values())
    unknown = [n for n in names if n not in nets]
    if unknown:
        raise ValueError(f"unknown network(s) {', '.join(unknown)}; available: {', '.join(nets)}")
    return [nets[n] for n in names]


def cmd_predict(args) -> int:
    import json
    from pathlib import Path

    from .inference import predict_all
    from .io import read_focal_series
    from .validation import check_sampling

    if args.sampling is not None:
        check_sampling(args.sampling, "--sampling")
    networks = _networks(args.networks)
    series = read_focal_series(args.inputs, sampling=args.sampling)
    if series.sampling is None:
        raise ValueError(f"{', '.join(Path(p).name for p in args.inputs)}: no pixel size in the file; "
                         "give it with --sampling (Å/px)")
    n_images = {net.card["n_images"] for net in networks}
    if series.images.shape[0] not in n_images:
        raise ValueError(f"{', '.join(Path(p).name for p in args.inputs)}: holds {series.images.shape[0]} image(s) "
                         f"of shape {series.images.shape[1:]}; the networks need a focal series of "
                         f"{'/'.join(map(str, sorted(n_images)))} images (one file holding them, or one file per image "
                         "in order of increasing defocus)")
    from .validation import check_focal_series

    check_focal_series(series.images, series.sampling, n_images, where=", ".join(Path(p).name for p in series.sources))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"focal series {series.images.shape} at {series.sampling:.4f} Å/px from {len(series.sources)} file(s)",
          file=sys.stderr)
    for event in predict_all(networks, series.images, series.sampling, k=args.k, radius=args.radius,
                             threshold=args.threshold):
        if "results" not in event:
            print(f"[{event['done']}/{event['total']}] {event['network']} done", file=sys.stderr)
            continue
        for name, sites in event["results"].items():
            sites.write_csv(out / f"{name}.csv")
            print(f"{name}: {len(sites)} sites {sites.counts()} in {event['seconds'][name]:.1f} s")
        cons = event["consensus"]
        cons.write_csv(out / "consensus.csv")
        print(f"consensus (k={cons.meta['k']} of {cons.meta['n']}, radius {args.radius} Å): {len(cons)} sites "
              f"{cons.counts()}")
        sidecar = dict(inputs=[str(Path(p).resolve()) for p in series.sources], sampling=series.sampling,
                       shape=list(series.images.shape), threshold=args.threshold, consensus=cons.meta,
                       networks={n.name: dict(sha256=n.card.get("sha256"), sampling=n.card["sampling"],
                                              seconds=round(event["seconds"][n.name], 3)) for n in networks},
                       units=dict(y="Å", x="Å"), origin="centre of pixel (0, 0)")
        (out / "predict.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return 0


def cmd_evaluate(args) -> int:
    from .metrics import atomic_f1, format_scores
    from .sites import read_csv

    pred, truth = read_csv(args.predicted), read_csv(args.truth)
    print(f"{args.predicted} against {args.truth}, radius {args.radius} Å")
    print(format_scores(atomic_f1(pred.yx, pred.classes, truth.yx, truth.classes, radius=args.radius)))
    return 0


def cmd_networks(args) -> int:
    from .models.registry import available_networks

    nets = available_networks()
    if not nets:
        print("no networks found")
        return 1
    for name, net in nets.items():
        c = net.card
        val = (c.get("validation") or {}).get("scores", {})
        f1 = " ".join(f"{k} {v['f1']:.3f}" for k, v in val.items() if isinstance(v, dict))
        print(f"{name}: {c['architecture']} {c.get('parameters', '?')} parameters, classes {'/'.join(c['classes'])}, "
              f"{c['n_images']} images, {c['sampling']} Å/px, validation atomic F1 {f1 or 'n/a'}  [{net.weights}]")
    return 0


def cmd_simulate(args) -> int:
    from pathlib import Path

    import numpy as np

    from .imaging import (
        MicroscopeParameters,
        draw_microscope_parameters,
        simulate_focal_series,
    )
    from .sites import Sites
    from .structures import make_mos2_sample
    from .validation import check_simulation_request

    check_simulation_request(args.size, args.sampling, args.dose)
    rng = np.random.default_rng(args.seed)
    sample = make_mos2_sample(args.size * args.sampling, graphene_layers=args.graphene_layers,
                              rotation=args.rotation, seed=args.seed)
    params = draw_microscope_parameters(rng) if args.random_microscope else MicroscopeParameters(
        defocus=args.defocus, dose=args.dose)
    images, params = simulate_focal_series(sample, (args.size, args.size), args.sampling, params, seed=args.seed)
    out = Path(args.out)
    np.savez(out, images=images, sampling=args.sampling, defocus=params.defoci, params=str(params.to_dict()))
    Sites(sample.sites, sample.classes, np.ones(len(sample.sites))).write_csv(out.with_suffix(".truth.csv"))
    print(f"wrote {out} {images.shape} at {args.sampling} Å/px, defocus {np.round(params.defoci, 1)} Å "
          f"(abTEM sign), and {out.with_suffix('.truth.csv')} {sample.counts()}")
    return 0


def cmd_view(args) -> int:
    import napari

    from ._widgets.demo import open_viewer

    open_viewer(demo=args.demo, files=args.files)
    napari.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-hrtem", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dataset", help="simulate a training/validation set of MoS2 focal series (.npz)")
    p.add_argument("out", help="output .npz file")
    p.add_argument("--samples", type=int, default=100, help="number of simulated samples (exit waves)")
    p.add_argument("--images-per-sample", type=int, default=8,
                   help="focal series per exit wave, each with fresh microscope parameters (thesis: 10)")
    p.add_argument("--size", type=int, default=128, help="image size in px (square)")
    p.add_argument("--phonon-configs", type=int, default=4, help="frozen-phonon configurations per exit wave")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("train", help="train a network on simulated focal series")
    p.add_argument("--architecture", default="unet", help="unet, unetpp or msdnet")
    p.add_argument("--dataset", action="append", default=[], help="training set(s) from `napari-hrtem dataset`; "
                   "none: simulate --samples samples first")
    p.add_argument("--samples", type=int, default=50, help="samples to simulate when no --dataset is given")
    p.add_argument("--validation", help="held-out set for the validation atomic F1 (recorded in the model card)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (cosine decay to lr/20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="KEY=INT", help="architecture setting, e.g. base_channels=16")
    p.add_argument("--validate-every", type=int, default=500)
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--name", help="network name (default: the architecture)")
    p.add_argument("--out", help="folder for the weights and model card (default: the user networks folder)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="find and classify atomic columns with every network, and their consensus")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="one file holding an (N, H, W) focal series, or one file per image in order of increasing defocus")
    p.add_argument("--out", required=True, help="output folder: <network>.csv, consensus.csv, predict.json")
    p.add_argument("--sampling", type=float, help="Å/px, needed only when the file carries no calibration")
    p.add_argument("--networks", nargs="+", help="networks to run (default: all; see `napari-hrtem networks`)")
    p.add_argument("--k", type=int, help="least number of agreeing networks for the consensus (default: majority)")
    p.add_argument("--radius", type=float, default=0.5, help="consensus agreement radius, Å")
    p.add_argument("--threshold", type=float, default=0.5, help="column probability threshold")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="precision, recall, atomic F1 per class of predicted against true sites")
    p.add_argument("predicted", help="CSV with y,x,class (Å)")
    p.add_argument("truth", help="CSV with y,x,class (Å)")
    p.add_argument("--radius", type=float, default=0.5, help="matching radius, Å")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("networks", help="list the available networks and their model cards' key facts")
    p.set_defaults(func=cmd_networks)

    p = sub.add_parser("simulate", help="simulate one MoS2 focal series (.npz) with its ground truth (.truth.csv)")
    p.add_argument("out", help="output .npz (images, sampling, defocus)")
    p.add_argument("--size", type=int, default=256, help="image size, px")
    p.add_argument("--sampling", type=float, default=0.22, help="Å/px")
    p.add_argument("--graphene-layers", type=int, default=0)
    p.add_argument("--rotation", type=float, help="flake rotation, degrees (default: thesis recipe)")
    p.add_argument("--defocus", type=float, default=-50.0, help="defocus of the first image, Å (abTEM sign)")
    p.add_argument("--dose", type=float, default=1e4, help="e/Å²")
    p.add_argument("--random-microscope", action="store_true", help="draw all microscope parameters from Table 1")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("view", help="open napari with the napari-hrtem widgets")
    p.add_argument("files", nargs="*", help="focal series file(s) to open")
    p.add_argument("--demo", action="store_true",
                   help="simulate MoS2 on graphene and run the shipped networks on it")
    p.set_defaults(func=cmd_view)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, MemoryError) as exc:
        print("napari-hrtem: error: " + " ".join(str(exc).split()), file=sys.stderr)  # one line
        return 2


if __name__ == "__main__":
    sys.exit(main())
