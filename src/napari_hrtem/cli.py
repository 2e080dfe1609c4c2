"""Command line: ``napari-hrtem dataset | simulate-dataset | train | predict | evaluate | networks | simulate | view``.

Errors in the user's input (files, options) print one line ``napari-hrtem: error: ...`` and exit
with status 2; nothing is written in that case.
"""

from __future__ import annotations

import argparse
import sys


def _progress(label: str, unit: str = "series"):
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def cmd_dataset(args) -> int:
    from napari_hrtem.io.validation import check_simulation_request
    from napari_hrtem.training.datasets import write_dataset

    check_simulation_request(
        args.size, samples=args.samples, images_per_sample=args.images_per_sample, phonon_configs=args.phonon_configs
    )

    recipe = write_dataset(
        args.out,
        args.samples,
        images_per_sample=args.images_per_sample,
        shape=(args.size, args.size),
        seed=args.seed,
        phonon_configs=args.phonon_configs,
        progress=_progress("simulating"),
    )
    print(f"wrote {args.out}: {recipe}")
    return 0


def cmd_simulate_dataset(args) -> int:
    from napari_hrtem.training.datastore import generate_dataset, parse_labels, read_config

    config = read_config(args.config) if args.config else None
    labels = parse_labels(args.labels)
    result = generate_dataset(
        args.out,
        args.structures,
        image_epochs=args.image_epochs,
        n_images=args.images,
        shape=(args.size, args.size),
        sampling_range=tuple(args.sampling_range),
        phonon_configs=args.phonon_configs,
        wave_sampling=args.wave_sampling,
        graphene_layers=args.graphene_layers,
        labels=labels,
        config=config,
        seed=args.seed,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=_progress("samples", "sample"),
    )
    print(
        f"{args.out}: {len(result['computed'])} sample(s) computed in {result['seconds']:.1f} s, "
        f"{len(result['skipped'])} already complete; {args.structures} structures x {args.image_epochs} focal series"
    )
    return 0


def cmd_train(args) -> int:
    import tempfile
    from pathlib import Path

    import numpy as np

    from napari_hrtem.io.validation import load_dataset_checked as load_dataset
    from napari_hrtem.models.registry import ARCHITECTURES, user_networks_dir
    from napari_hrtem.training.datasets import write_dataset
    from napari_hrtem.training.trainer import save_network, train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    initial_state, initialized_from = None, None
    if args.init:
        if args.set:
            raise ValueError("--set cannot change the architecture of the network given by --init")
        (start,) = _networks([args.init])
        if args.architecture and args.architecture != start.card.architecture:
            raise ValueError(f"--init {start.name} is a {start.card.architecture}, not a {args.architecture}")
        args.architecture = start.card.architecture
        initial_state = start.load("cpu").state_dict()
        initialized_from = dict(name=start.name, sha256=start.card.sha256)
    args.architecture = args.architecture or "unet"
    paths = list(args.dataset)
    synthesize, bank, stores = None, [], []
    if args.bank:
        from napari_hrtem.training.datastore import load_exit_waves
        from napari_hrtem.training.trainer import exit_wave_bank

        for store in args.bank:
            waves = load_exit_waves(store)
            bank += waves
            stores.append(dict(store=Path(store).name, exit_waves=len(waves)))
        synthesize = exit_wave_bank(bank, device=args.device)
    if paths or not bank:
        if not paths:
            path = Path(tempfile.mkdtemp()) / "train.npz"
            write_dataset(path, args.samples, seed=args.seed, progress=_progress("simulating training set"))
            paths = [path]
        sets = [load_dataset(p) for p in paths]
        data = dict(
            images=np.concatenate([d["images"] for d in sets]), labels=np.concatenate([d["labels"] for d in sets])
        )
        if bank and data["images"].shape[1:] != (3, *bank[0]["labels"].shape):
            raise ValueError(
                f"--dataset holds focal series of shape {data['images'].shape[1:]}; the --bank makes "
                f"{(3, *bank[0]['labels'].shape)}: they cannot share a batch"
            )
    else:
        sets, data = [], None
    samplings = np.concatenate([[item["sampling"] for item in bank], *(d["sampling"] for d in sets)])
    n_images = 3 if data is None else int(data["images"].shape[1])
    validation = load_dataset(args.validation) if args.validation else None
    if initialized_from:
        config = dict(start.card.config)
    else:
        config = dict(ARCHITECTURES[args.architecture][2]) if args.architecture in ARCHITECTURES else {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        config[key] = int(value)
    sampling = float(np.mean(samplings))
    import os

    rank = int(os.environ.get("RANK", "0"))
    out = Path(args.out) if args.out else user_networks_dir()
    name = args.name or args.architecture
    checkpoint_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else out / f"{name}.checkpoint"
    if args.resume and rank == 0 and not (checkpoint_dir / "checkpoint.pt").is_file():
        print(f"no checkpoint in {checkpoint_dir}: starting at step 1", file=sys.stderr)
    result = None
    for event in train(
        args.architecture,
        data,
        validation=validation,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        config=config,
        device=args.device,
        validate_every=args.validate_every,
        validation_limit=None,
        log_every=args.log_every,
        optimizer=args.optimizer,
        loss=args.loss,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        amp=not args.no_amp,
        synthesize=synthesize,
        synthesize_fraction=args.bank_fraction,
        initial_state=initial_state,
    ):
        if event.get("done"):
            result = event
            break
        if rank != 0:
            continue
        line = f"step {event['step']}/{event['steps']}  {event['seconds']:.0f} s"
        if "resumed_from" in event:
            line += f"  resumed from the checkpoint of step {event['resumed_from']}"
        if "loss" in event:
            line += f"  loss {event['loss']:.4f}  lr {event['lr']:.2e}"
        if "validation" in event:
            v = event["validation"]
            line += "  val F1 " + " ".join(f"{c} {v[c]['f1']:.3f}" for c in (*v.keys(),) if isinstance(v[c], dict))
        if "checkpoint" in event:
            line += "  checkpoint saved"
        print(line, flush=True)
    if result["world_size"] > 1:
        if rank == 0:
            same = "identical" if result["replicas_identical"] else "DIFFERENT"
            print(f"DDP: {result['world_size']} processes, parameters {same} on all of them", flush=True)
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
        if rank != 0:
            return 0
    card = dict(
        architecture=args.architecture,
        config=config,
        classes=["Mo", "S2", "S"],
        n_images=n_images,
        defocus_step=50.0,
        sampling=round(sampling, 4),
        normalization_distance=12.0,
        support_filter=True,
        support_lattice_constant=2.46,
        material="MoS2",
        training=dict(
            command=" ".join(["napari-hrtem", *sys.argv[1:]]) if sys.argv else "",
            datasets=[
                dict(file=Path(p).name, recipe=d["recipe"], focal_series=int(len(d["images"])))
                for p, d in zip(paths, sets)
            ],
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            seconds=round(result["seconds"]),
            optimizer=args.optimizer,
            loss=args.loss,
            processes=result["world_size"],
            **(
                {"exit_wave_banks": stores, "bank_fraction": args.bank_fraction if data is not None else 1.0}
                if stores
                else {}
            ),
            **({"initialized_from": initialized_from} if initialized_from else {}),
        ),
        validation=None
        if result["validation"] is None
        else dict(recipe=validation["recipe"], radius=0.5, scores=result["validation"]),
    )
    if validation is not None:  # the column probability threshold with the best validation atomic F1
        from napari_hrtem.training.trainer import calibrate_threshold

        threshold, scan = calibrate_threshold(result["model"], validation)
        card["threshold"] = threshold
        card["validation"] = card["validation"] or dict(recipe=validation["recipe"], radius=0.5)
        card["validation"].update(
            threshold=threshold,
            scores=scan[threshold],
            overall_f1_by_threshold={str(t): round(v["overall"]["f1"], 4) for t, v in scan.items()},
        )
        print(
            f"column probability threshold {threshold:g}: validation atomic F1 {scan[threshold]['overall']['f1']:.3f} "
            f"(0.5: {scan[0.5]['overall']['f1']:.3f})"
        )
    path = save_network(result["model"], out, name, card)
    print(f"wrote {path} and {path.with_suffix('.pt')}")
    return 0


def _networks(names):
    from napari_hrtem.models.registry import available_networks

    nets = available_networks()
    if not nets:
        raise ValueError("no networks found (the shipped weights are missing from the installation)")
    if not names:
        return list(nets.values())
    unknown = [n for n in names if n not in nets]
    if unknown:
        raise ValueError(f"unknown network(s) {', '.join(unknown)}; available: {', '.join(nets)}")
    return [nets[n] for n in names]


def _check_networks(networks) -> None:
    """Before any work: every chosen network loads (its card fits its weights, their hash matches) and,
    for a consensus of several, they label the same classes; else one ValueError (NetworkError)."""
    from napari_hrtem.analysis.inference import check_same_classes

    check_same_classes(networks, hint="choose networks with --networks")
    for net in networks:
        net.load("cpu")  # a few MB each; raises NetworkError naming the weight file


def cmd_predict(args) -> int:
    import json
    from pathlib import Path

    from napari_hrtem.analysis.inference import predict_all
    from napari_hrtem.io.focal_series import read_focal_series
    from napari_hrtem.io.validation import check_focal_series, check_sampling

    if args.sampling is not None:
        check_sampling(args.sampling, "--sampling")
    networks = _networks(args.networks)
    _check_networks(networks)
    series = read_focal_series(args.inputs, sampling=args.sampling, timeout=getattr(args, "read_timeout", None))
    if series.sampling is None:
        raise ValueError(
            f"{', '.join(Path(p).name for p in args.inputs)}: no pixel size in the file; give it with --sampling (Å/px)"
        )
    where = ", ".join(Path(p).name for p in series.sources)
    notes = []  # printed once the input is known to be good: an error stays one line
    series = _assemble(args, series, networks, notes)
    n_images = {net.card.n_images for net in networks}
    if series.images.shape[0] not in n_images:
        raise ValueError(
            f"{', '.join(Path(p).name for p in args.inputs)}: holds {series.images.shape[0]} image(s) "
            f"of shape {series.images.shape[1:]}; the networks need a focal series of "
            f"{'/'.join(map(str, sorted(n_images)))} images (one file holding them, or one file per image "
            "in order of increasing defocus; choose frames of a longer series with --frames)"
        )
    check_focal_series(series.images, series.sampling, n_images, where=where)  # before any work is done
    print("\n".join(notes), file=sys.stderr)
    series, alignment = _align(args, series)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"focal series {series.images.shape} at {series.sampling:.4f} Å/px from {len(series.sources)} file(s)",
        file=sys.stderr,
    )
    for event in predict_all(
        networks, series.images, series.sampling, k=args.k, radius=args.radius, threshold=args.threshold, tile=args.tile
    ):
        if "results" not in event:
            print(f"[{event['done']}/{event['total']}] {event['network']} done", file=sys.stderr)
            continue
        if alignment is not None:  # back to the reference frame's Å coordinates
            event["results"] = {n: _to_reference(s, alignment) for n, s in event["results"].items()}
            event["consensus"] = _to_reference(event["consensus"], alignment)
        for name, sites in event["results"].items():
            sites.write_csv(out / f"{name}.csv")
            print(f"{name}: {len(sites)} sites {sites.counts()} in {event['seconds'][name]:.1f} s")
        cons = event["consensus"]
        cons.write_csv(out / "consensus.csv")
        print(
            f"consensus (k={cons.meta['k']} of {cons.meta['n']}, radius {args.radius} Å): {len(cons)} sites "
            f"{cons.counts()}"
        )
        sidecar = dict(
            inputs=[str(Path(p).resolve()) for p in series.sources],
            sampling=series.sampling,
            shape=list(series.images.shape),
            consensus=cons.meta,
            networks={
                n.name: dict(
                    sha256=n.card.sha256,
                    sampling=n.card.sampling,
                    threshold=event["results"][n.name].meta["threshold"],
                    seconds=round(event["seconds"][n.name], 3),
                )
                for n in networks
            },
            units=dict(y="Å", x="Å"),
            origin="centre of pixel (0, 0)",
        )
        sidecar.update(
            frames=series.metadata.get("frames"),
            defocus=series.defocus,
            defocus_convention=series.metadata.get("defocus_convention"),
        )
        if alignment is not None:
            sidecar["origin"] = (
                f"centre of pixel (0, 0) of frame {series.metadata['frames'][alignment.reference]} "
                "of the input (the alignment's reference frame)"
            )
            sidecar["alignment"] = alignment.to_dict()
        (out / "predict.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return 0


def _to_reference(sites, alignment):
    """Sites found on the aligned, cropped series -> Å in the reference frame of the input."""
    import dataclasses

    return dataclasses.replace(
        sites, yx=alignment.to_reference(sites.yx), meta={**sites.meta, "frame": "alignment reference"}
    )


def _assemble(args, series, networks, notes: list):
    """``predict``'s --frames/--defocus/--defocus-convention; what it assumed goes to ``notes``.

    A series longer than the networks' focal series, with known defocus and no --frames, gets the
    frames whose defocus steps are closest to the networks' ``defocus_step``.
    """
    from napari_hrtem.io.focal_series import assemble_focal_series

    frames = None if not args.frames else [int(f) for f in args.frames.replace(" ", "").split(",") if f]
    cards = {(net.card.n_images, float(net.card.defocus_step)) for net in networks}
    choose = {}
    if (
        frames is None
        and len(cards) == 1
        and series.images.shape[0] > next(iter(cards))[0]
        and (series.defocus is not None or args.defocus is not None)
    ):
        choose = dict(zip(("n", "step"), next(iter(cards))))
    series = assemble_focal_series(series, frames, defocus=args.defocus, convention=args.defocus_convention, **choose)
    if choose:
        notes.append(
            f"chose {choose['n']} of the frames, defocus steps closest to {choose['step']:g} Å (give "
            "--frames to choose others)"
        )
    notes.append(
        f"frames {series.metadata['frames']} (0-based), defocus "
        f"{'unknown' if series.defocus is None else [round(d, 1) for d in series.defocus]} Å; "
        f"{series.metadata['defocus_convention']}"
    )
    return series


def _align(args, series):
    """``predict``'s --align: the drift-corrected series and its :class:`Alignment` (or None)."""
    if not args.align:
        return series, None
    from napari_hrtem.analysis.alignment import align_series
    from napari_hrtem.io.focal_series import FocalSeries

    images, alignment = align_series(series.images, series.sampling)
    print(
        "drift alignment (sites are reported in the reference frame's coordinates):\n" + alignment.report(),
        file=sys.stderr,
    )
    aligned = FocalSeries(
        images,
        sampling=series.sampling,
        energy=series.energy,
        defocus=series.defocus,
        sources=series.sources,
        metadata={**series.metadata, "alignment": alignment.to_dict()},
    )
    return aligned, alignment


def _evaluation_pairs(predicted, truth, network: str) -> list:
    """``(name, predicted CSV, truth CSV)`` for two files or two folders of samples."""
    from pathlib import Path

    predicted, truth = Path(predicted), Path(truth)
    if truth.is_file() and predicted.is_file():
        return [(truth.stem, predicted, truth)]
    if not (truth.is_dir() and predicted.is_dir()):
        raise ValueError(f"{predicted} and {truth}: give two CSV files, or two folders (predictions and ground truth)")
    truths = sorted(truth.glob("*.csv"))
    if not truths:
        raise ValueError(f"{truth}: no ground-truth .csv files in the folder")
    pairs, missing = [], []
    for t in truths:
        name = t.name[: -len(".truth.csv")] if t.name.endswith(".truth.csv") else t.stem
        candidates = [predicted / f"{name}.csv", predicted / name / f"{network}.csv"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            missing.append(name)
        else:
            pairs.append((name, found, t))
    if missing:
        raise ValueError(
            f"{predicted}: no prediction for {len(missing)} sample(s) of {truth} "
            f"({', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}); expected NAME.csv or "
            f"NAME/{network}.csv for each NAME.truth.csv"
        )
    return pairs


def cmd_evaluate(args) -> int:
    from napari_hrtem.analysis.metrics import atomic_f1, format_scores, format_summary, summarize
    from napari_hrtem.io.sites import read_csv

    if args.dataset:
        if args.predicted or args.truth:
            raise ValueError("give either PREDICTED and TRUTH, or --network with --dataset")
        if not args.network:
            raise ValueError("--dataset needs --network NAME (see `napari-hrtem networks`)")
        from napari_hrtem.training.datasets import load_dataset
        from napari_hrtem.training.trainer import evaluate_model

        (net,) = _networks([args.network])
        data = load_dataset(args.dataset)
        if data["images"].shape[1] != net.card.n_images:
            raise ValueError(
                f"{args.dataset}: focal series of {data['images'].shape[1]} images; "
                f"{net.name} needs {net.card.n_images}"
            )
        from napari_hrtem.analysis.inference import network_threshold

        threshold = network_threshold(net.card, args.threshold)
        scores = evaluate_model(net.load(args.device), data, radius=args.radius, threshold=threshold, limit=args.limit)
        print(
            f"{net.name} on {args.dataset} ({scores['samples']} samples), radius {args.radius} Å, "
            f"column probability threshold {threshold:g}"
        )
    else:
        if not (args.predicted and args.truth):
            raise ValueError("give PREDICTED and TRUTH (files or folders), or --network with --dataset")
        pairs = _evaluation_pairs(args.predicted, args.truth, args.network or "consensus")
        per_sample = []
        for _, p, t in pairs:
            pred, truth = read_csv(p), read_csv(t)
            per_sample.append(atomic_f1(pred.yx, pred.classes, truth.yx, truth.classes, radius=args.radius))
        scores = summarize(per_sample)
        print(f"{args.predicted} against {args.truth} ({len(pairs)} sample(s)), radius {args.radius} Å")
    print(format_scores(scores))
    if scores["samples"] > 1 or "pixel_f1" in scores:
        print(format_summary(scores))
    if args.json:
        import json
        from pathlib import Path

        Path(args.json).write_text(json.dumps(dict(radius=args.radius, scores=scores), indent=2) + "\n")
    return 0


def cmd_networks(args) -> int:
    from napari_hrtem.models.registry import available_networks

    nets = available_networks()
    if not nets:
        print("no networks found")
        return 1
    for name, net in nets.items():
        c = net.card
        val = (c.get("validation") or {}).get("scores", {})
        f1 = " ".join(f"{k} {v['f1']:.3f}" for k, v in val.items() if isinstance(v, dict))
        print(
            f"{name}: {c['architecture']} {c.get('parameters', '?')} parameters, classes {'/'.join(c['classes'])}, "
            f"{c['n_images']} images, {c['sampling']} Å/px, validation atomic F1 {f1 or 'n/a'}  [{net.weights}]"
        )
    return 0


def cmd_simulate(args) -> int:
    from pathlib import Path

    import numpy as np

    from napari_hrtem.io.sites import Sites
    from napari_hrtem.io.validation import check_simulation_request
    from napari_hrtem.simulation.imaging import (
        MicroscopeParameters,
        draw_microscope_parameters,
        simulate_focal_series,
    )
    from napari_hrtem.simulation.structures import make_mos2_sample

    check_simulation_request(args.size, args.sampling, args.dose)
    rng = np.random.default_rng(args.seed)
    sample = make_mos2_sample(
        args.size * args.sampling, graphene_layers=args.graphene_layers, rotation=args.rotation, seed=args.seed
    )
    params = (
        draw_microscope_parameters(rng)
        if args.random_microscope
        else MicroscopeParameters(defocus=args.defocus, dose=args.dose)
    )
    images, params = simulate_focal_series(sample, (args.size, args.size), args.sampling, params, seed=args.seed)
    out = Path(args.out)
    np.savez(out, images=images, sampling=args.sampling, defocus=params.defoci, params=str(params.to_dict()))
    Sites(sample.sites, sample.classes, np.ones(len(sample.sites))).write_csv(out.with_suffix(".truth.csv"))
    print(
        f"wrote {out} {images.shape} at {args.sampling} Å/px, defocus {np.round(params.defoci, 1)} Å "
        f"(abTEM sign), and {out.with_suffix('.truth.csv')} {sample.counts()}"
    )
    return 0


def cmd_view(args) -> int:
    import napari

    from napari_hrtem.plugin.widgets.demo import open_viewer

    open_viewer(demo=args.demo, files=args.files)
    napari.run()
    return 0


def cmd_vibration_table(args) -> int:
    from napari_hrtem.simulation.vibrations import coordination_table_from_trajectory

    table = coordination_table_from_trajectory(
        args.trajectory, skip=args.skip, cutoff_mult=args.cutoff_mult, temperature=args.temperature
    )
    table.save(args.out)
    for element, row in table.sigmas.items():
        cells = ", ".join(f"CN {cn}: {sigma:.4f} Å ({table.counts[element][cn]} atoms)" for cn, sigma in row.items())
        print(f"{element}: {cells}")
    print(f"wrote {args.out}")
    return 0


def cmd_parameters(args) -> int:
    from napari_hrtem.simulation.parameters import PARAMETER_FILE, load_parameter_ranges, save_parameter_ranges

    if args.out:
        if args.out.endswith((".yaml", ".yml")) and args.file is None:
            from pathlib import Path

            Path(args.out).write_text(PARAMETER_FILE.read_text(encoding="utf-8"), encoding="utf-8")  # with comments
        else:
            save_parameter_ranges(load_parameter_ranges(args.file), args.out)
        print(f"wrote {args.out}")
    else:
        print(PARAMETER_FILE.read_text(encoding="utf-8") if args.file is None else load_parameter_ranges(args.file))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-hrtem", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dataset", help="simulate a training/validation set of MoS2 focal series (.npz)")
    p.add_argument("out", help="output .npz file")
    p.add_argument("--samples", type=int, default=100, help="number of simulated samples (exit waves)")
    p.add_argument(
        "--images-per-sample",
        type=int,
        default=8,
        help="focal series per exit wave, each with fresh microscope parameters (thesis: 10)",
    )
    p.add_argument("--size", type=int, default=128, help="image size in px (square)")
    p.add_argument("--phonon-configs", type=int, default=4, help="frozen-phonon configurations per exit wave")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("simulate-dataset", help="simulate a dataset into one zarr store with dask (resumable)")
    p.add_argument(
        "--out",
        required=True,
        help="output zarr store (a directory, e.g. DATA.zarr); an interrupted "
        "run is completed by running the same command again",
    )
    p.add_argument("--structures", type=int, required=True, help="number of samples (structures, one exit wave each)")
    p.add_argument(
        "--image-epochs",
        type=int,
        default=8,
        help="focal series per exit wave, each with fresh microscope parameters (thesis: 10)",
    )
    p.add_argument("--config", metavar="PARAMS", help="parameter-range file (JSON or YAML), recorded in the store")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="dask.distributed scheduler, e.g. tcp://host:8786 (default: a local cluster)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="local cluster: single-threaded worker processes (default: CPU cores); "
        "0: no cluster, compute in this process",
    )
    p.add_argument("--images", type=int, default=3, help="images per focal series")
    p.add_argument("--size", type=int, default=128, help="image size in px (square)")
    p.add_argument(
        "--sampling-range",
        type=float,
        nargs=2,
        default=[0.215, 0.235],
        metavar=("MIN", "MAX"),
        help="image sampling drawn per sample, Å/px",
    )
    p.add_argument("--phonon-configs", type=int, default=4, help="frozen-phonon configurations per exit wave")
    p.add_argument("--wave-sampling", type=float, default=0.05, help="largest exit-wave sampling, Å")
    p.add_argument("--graphene-layers", type=int, help="fixed number of graphene layers (default: thesis recipe)")
    p.add_argument(
        "--labels",
        nargs="+",
        default=["disk:0.45", "gaussian:0.35"],
        metavar="TYPE:WIDTH",
        help="label types with width in Å: disk:RADIUS and/or gaussian:SIGMA",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_simulate_dataset)

    p = sub.add_parser("train", help="train a network on simulated focal series")
    p.add_argument("--architecture", help="unet (default), unetpp or msdnet")
    p.add_argument(
        "--dataset",
        action="append",
        default=[],
        help="training set(s) from `napari-hrtem dataset`; none: simulate --samples samples first",
    )
    p.add_argument("--samples", type=int, default=50, help="samples to simulate when no --dataset is given")
    p.add_argument(
        "--bank",
        action="append",
        default=[],
        metavar="STORE.zarr",
        help="train on the exit waves of `napari-hrtem simulate-dataset` store(s), with fresh microscope "
        "parameters (thesis Table 1) for every focal series of every batch",
    )
    p.add_argument(
        "--bank-fraction",
        type=float,
        default=0.5,
        help="with both --bank and --dataset: the share of every batch made from the bank",
    )
    p.add_argument(
        "--init",
        metavar="NETWORK",
        help="start from the weights of this network (its architecture and settings) instead of a random "
        "initialization",
    )
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
    p.add_argument(
        "--optimizer", choices=("adam", "rmsprop"), default="adam", help="adam (thesis) or rmsprop (exit-wave paper)"
    )
    p.add_argument(
        "--loss",
        choices=("cross_entropy", "mse"),
        default="cross_entropy",
        help="cross-entropy on class maps, or MSE on Gaussian labels (see README)",
    )
    p.add_argument("--log-every", type=int, default=10, help="steps between progress lines")
    p.add_argument("--checkpoint-dir", help="folder of checkpoint.pt (default: OUT/NAME.checkpoint)")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (written atomically)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint (same settings) instead of starting afresh"
    )
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="find and classify atomic columns with every network, and their consensus")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="one file holding an (N, H, W) focal series, or one file per image in order of increasing defocus",
    )
    p.add_argument("--out", required=True, help="output folder: <network>.csv, consensus.csv, predict.json")
    p.add_argument("--sampling", type=float, help="Å/px, needed only when the file carries no calibration")
    p.add_argument("--networks", nargs="+", help="networks to run (default: all; see `napari-hrtem networks`)")
    p.add_argument("--k", type=int, help="least number of agreeing networks for the consensus (default: majority)")
    p.add_argument("--radius", type=float, default=0.5, help="consensus agreement radius, Å")
    p.add_argument(
        "--threshold",
        type=float,
        help="column probability threshold of every network (default: each network's own, from its card)",
    )
    p.add_argument("--frames", help="0-based frames to use from a longer series, e.g. 3,4,5 (default: all)")
    p.add_argument(
        "--defocus",
        type=float,
        nargs="+",
        metavar="DF",
        help="defocus of each frame (or of each chosen frame), Å; default: from the file if recorded",
    )
    p.add_argument(
        "--defocus-convention",
        choices=["auto", "microscope", "abtem"],
        default="auto",
        help="sign of the defocus values: abtem (defocus = -C10, positive = underfocus, as the "
        "networks) or microscope (the opposite, e.g. TIA/Velox/MacTempas); auto: abtem for --defocus "
        "and .npy/.npz, microscope for microscope files. Frames are sorted by increasing abTEM defocus",
    )
    p.add_argument(
        "--align",
        action="store_true",
        help="register the frames' drift (sub-pixel), crop to the common area; sites are reported "
        "in the reference (middle) frame's coordinates",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=2560,
        help="largest tile edge in px for large images (bounds memory; halved on CUDA out-of-memory)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        metavar="SECONDS",
        help="time limit for reading one HDF5-based file (.emd), read in a child process; a damaged "
        "file can make the HDF5 library loop forever (default 60, or NAPARI_HRTEM_READ_TIMEOUT)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "evaluate",
        help="atomic F1 (per class, overall, 10th percentile), RMS position error and "
        "pixel F1 of predicted against true sites, or of a network on a dataset",
    )
    p.add_argument("predicted", nargs="?", help="CSV with y,x,class (Å), or a folder of NAME.csv / NAME/<network>.csv")
    p.add_argument("truth", nargs="?", help="CSV with y,x,class (Å), or a folder of NAME.truth.csv / NAME.csv")
    p.add_argument("--radius", type=float, default=0.5, help="matching radius, Å")
    p.add_argument(
        "--network",
        help="with --dataset: the network to score; with folders: which NAME/<network>.csv (default consensus)",
    )
    p.add_argument("--dataset", help="a dataset (.npz from `napari-hrtem dataset`) to run --network on; adds pixel F1")
    p.add_argument("--limit", type=int, help="score only the first N samples of --dataset")
    p.add_argument(
        "--threshold",
        type=float,
        help="column probability threshold (with --dataset; default: the network's own, from its card)",
    )
    p.add_argument("--device", help="cuda or cpu (with --dataset)")
    p.add_argument("--json", help="also write the scores to this JSON file")
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
    p.add_argument("--demo", action="store_true", help="simulate MoS2 on graphene and run the shipped networks on it")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser(
        "vibration-table",
        help="vibration amplitudes per element and coordination number from an "
        "MD trajectory (JSON, for frozen phonons)",
    )
    p.add_argument("trajectory", help="ASE-readable trajectory (.traj, .xyz, ...)")
    p.add_argument("--out", required=True, help="output .json")
    p.add_argument("--skip", type=int, default=0, help="frames discarded at the start (equilibration)")
    p.add_argument("--temperature", type=float, help="MD temperature, K (lets the table be rescaled)")
    p.add_argument("--cutoff-mult", type=float, default=1.2, help="neighbour cut-off / sum of covalent radii")
    p.set_defaults(func=cmd_vibration_table)

    p = sub.add_parser("parameters", help="show or write the simulation parameter ranges (thesis Table 1)")
    p.add_argument("--file", help="a YAML/JSON parameter file to check and merge over the defaults")
    p.add_argument("--out", help="write the ranges to this .yaml/.json (a template to edit)")
    p.set_defaults(func=cmd_parameters)
    return parser


#: Loggers of the file-reading libraries: their warnings about a damaged file come before the
#: error that names it, so the CLI keeps them quiet (an error stays one line).
LIBRARY_LOGGERS = ("tifffile", "rsciio", "h5py", "mrcfile")


def main(argv=None) -> int:
    import logging

    parser = build_parser()
    args = parser.parse_args(argv)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        return args.func(args)
    except (ValueError, OSError, MemoryError) as exc:
        print("napari-hrtem: error: " + " ".join(str(exc).split()), file=sys.stderr)  # one line
        return 2


if __name__ == "__main__":
    sys.exit(main())
