"""napari-hrtem command line: simulate MoS2 focal series and datasets, train, and label atomic columns.

Commands: dataset, simulate-dataset, train, predict, evaluate, networks, simulate, view,
vibration-table, parameters. Each is a thin shell over the Python API (napari_hrtem.api) or
the core function it names: it parses the options, calls the function and prints or writes the
result. (Plain text here: the first line is the parser's description in --help.)

Errors in the user's input (files, options) print one line "napari-hrtem: error: ..." and exit
with status 2; nothing is written in that case.
"""

from __future__ import annotations

import argparse
import math
import sys


def _progress(label: str, unit: str = "series"):
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr.

    The bar starts at the first report, at its count (a resumed store's samples, or the first
    one done): the rate counts only what is done while the bar is shown, never a count reached
    before the bar's clock started.
    """
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=done, desc=label, unit=unit, file=sys.stderr)
        else:
            bar.total = total
            bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def cmd_dataset(args) -> int:
    from napari_hrtem.io.validation import check_simulation_request
    from napari_hrtem.training.datasets import write_dataset

    counts = dict(samples=args.samples, images_per_sample=args.images_per_sample)
    if args.phonon_configs is not None:
        counts["phonon_configs"] = args.phonon_configs
    check_simulation_request(args.size, **counts)
    ranges = _config(args)
    recipe = write_dataset(
        args.out,
        args.samples,
        images_per_sample=args.images_per_sample,
        shape=(args.size, args.size),
        seed=args.seed,
        phonon_configs=args.phonon_configs,
        ranges=ranges,
        energy=_energy_ev(args),
        progress=_progress("simulating"),
    )
    print(f"wrote {args.out}: {recipe}")
    return 0


def _config(args) -> dict | None:
    """The ``--config`` parameter file over the thesis defaults, or None."""
    from napari_hrtem.training.datastore import read_config

    return read_config(args.config) if getattr(args, "config", None) else None


def _energy_ev(args) -> float | None:
    """``--energy`` (kV) in eV, checked; None when not given (the --config file's, else 50 kV)."""
    energy = getattr(args, "energy", None)
    if energy is None:
        return None
    if not (math.isfinite(energy) and 0 < energy <= 3000):
        raise ValueError(f"--energy must be the beam energy in kV (a number > 0 and <= 3000), got {energy}")
    return energy * 1e3


def cmd_simulate_dataset(args) -> int:
    from napari_hrtem.training.datastore import generate_dataset, parse_labels

    config = _config(args)
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
        slice_thickness=args.slice_thickness,
        energy=_energy_ev(args),
        graphene_layers=args.graphene_layers,
        labels=labels,
        config=config,
        seed=args.seed,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=_progress("samples", "sample"),
    )
    for note in result.get("notes", []):  # e.g. the lock of a dead run taken over
        print(note, file=sys.stderr)
    print(
        f"{args.out}: {len(result['computed'])} sample(s) computed in {result['seconds']:.1f} s, "
        f"{len(result['skipped'])} already complete; {args.structures} structures x {args.image_epochs} focal series"
    )
    return 0


def cmd_train(args) -> int:
    from napari_hrtem.records import drive
    from napari_hrtem.training.jobs import SimulatedSet, iter_train, parse_settings
    from napari_hrtem.training.trainer import TrainingSettings

    settings = TrainingSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        optimizer=args.optimizer,
        loss=args.loss,
        class_weights=tuple(args.class_weights) if args.class_weights else None,
        validate_every=args.validate_every,
        validation_limit=None,
        log_every=args.log_every,
        checkpoint_dir=args.checkpoint_dir or None,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        amp=not args.no_amp,
        device=args.device,
        threads=args.threads,
    )
    data = list(args.dataset) or ([] if args.bank else [SimulatedSet(args.samples, seed=args.seed)])
    bars: dict = {}

    def show(event) -> None:
        if event.info.get("note"):
            print(event.stage, file=sys.stderr)
        elif event.stage.startswith("simulating"):
            bars.setdefault(event.stage, _progress(event.stage))(event.done, event.total)
        elif event.stage == "training":
            print(_train_line(event.info), flush=True)

    steps = iter_train(
        args.architecture,
        data,
        validation=args.validation or None,
        banks=args.bank,
        bank_fraction=args.bank_fraction,
        init=args.init,
        config=parse_settings(args.set),
        settings=settings,
        name=args.name,
        out=args.out,
        overwrite=args.overwrite,
        record=dict(command=" ".join(["napari-hrtem", *sys.argv[1:]]) if sys.argv else ""),
    )
    result = drive(steps, show)
    if result.rank != 0:
        return 0
    if result.processes > 1:
        same = "identical" if result.replicas_identical else "DIFFERENT"
        print(f"DDP: {result.processes} processes, parameters {same} on all of them", flush=True)
    return _report_saved(result)


def _report_saved(result) -> int:
    """The last lines of ``train`` and ``interpolate``: the calibrated threshold, the files written."""
    if result.threshold is not None and result.f1_by_threshold:
        f1 = result.f1_by_threshold
        print(
            f"column probability threshold {result.threshold:g}: validation atomic F1 {f1[result.threshold]:.3f} "
            f"(0.5: {f1[0.5]:.3f})"
        )
    path = result.card_path
    print(f"wrote {path} and {path.with_suffix('.pt')}")
    return 0


def _train_line(event: dict) -> str:
    """One progress line of ``napari-hrtem train``."""
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
    return line


def cmd_predict(args) -> int:
    from napari_hrtem import api
    from napari_hrtem.io.validation import check_sampling

    if args.sampling is not None:
        check_sampling(args.sampling, "--sampling")
    energy = _energy_ev(args)
    if getattr(args, "batch", False):
        return _predict_batch(args, api, energy)
    networks = api.check_networks(args.networks or None)
    api.check_prediction_settings(  # before any file is read: an error stays one line
        k=args.k, n_networks=len(networks), radius=args.radius, threshold=args.threshold, tile=args.tile
    )
    series = api.read_focal_series(args.inputs, sampling=args.sampling, timeout=getattr(args, "read_timeout", None))
    prepared = api.prepare_focal_series(
        series,
        networks,
        frames=args.frames,
        defocus=args.defocus,
        defocus_convention=args.defocus_convention,
        align=args.align,
        energy=energy,
    )
    overwrite = getattr(args, "overwrite", False)
    out = api.check_prediction_folder(args.out, overwrite=overwrite)  # before the networks run: a bad --out fails now
    from napari_hrtem.io.files import RunLock

    with RunLock(out, "predict") as lock:  # a second predict into --out is refused while this one runs
        return _predict_into(args, api, networks, prepared, out, overwrite, lock.note)


def _predict_into(args, api, networks, prepared, out, overwrite: bool, note: str | None) -> int:
    """The networks, the consensus and the files of ``napari-hrtem predict`` (under the folder's lock)."""
    print("\n".join(prepared.notes), file=sys.stderr)  # once the input is known to be good: an error stays one line
    if note:  # the lock of a dead run taken over
        print(note, file=sys.stderr)
    shape, sampling = prepared.series.images.shape, prepared.series.sampling
    print(f"focal series {shape} at {sampling:.4f} Å/px from {len(prepared.series.sources)} file(s)", file=sys.stderr)
    if not args.networks:  # the shipped set for the series' beam energy (the file's, or --energy)
        energy = prepared.series.energy
        kv = "unknown" if energy is None else f"{energy / 1e3:g} kV"
        names = ", ".join(n.name for n in api.shipped_networks(energy))  # predict_consensus(None, ...) runs them
        print(f"beam energy {kv}: shipped networks {names}", file=sys.stderr)
    prediction = api.predict_consensus(
        None if not args.networks else networks,
        prepared,
        k=args.k,
        radius=args.radius,
        threshold=args.threshold,
        tile=args.tile,
        progress=lambda event: print(f"[{event.done}/{event.total}] {event.stage}", file=sys.stderr),
        specimen_mask=not getattr(args, "no_specimen_mask", False),
        precision=getattr(args, "precision", "auto"),
        test_time_augmentation=getattr(args, "tta", False),
        rule=getattr(args, "rule", "auto"),
    )
    api.write_prediction(prediction, out, overwrite=overwrite)
    for note in prediction.notes:  # e.g. the sites dropped outside the specimen, stale files removed
        if note.startswith(("dropped ", "specimen mask", "removed ")):
            print(note, file=sys.stderr)
    for warning in prediction.warnings:  # input outside the networks' training domain (also in predict.json)
        print(f"napari-hrtem: warning: {warning}", file=sys.stderr)

    def conflicts(sites) -> str:  # like columns side by side (the sublattice check), when any
        n = sites.meta.get("sublattice_conflicts")
        return f", {n} in sublattice conflict" if n else ""

    for name, sites in prediction.results.items():
        print(f"{name}: {len(sites)} sites {sites.counts()}{conflicts(sites)} in {prediction.seconds[name]:.1f} s")
    cons = prediction.consensus
    print(
        f"consensus (k={cons.meta['k']} of {cons.meta['n']}, radius {args.radius} Å, {cons.meta.get('rule', 'sum')} rule): "
        f"{len(cons)} sites "
        f"{cons.counts()}{conflicts(cons)}"
    )
    from napari_hrtem.analysis.uncertainty import describe_agreement

    spread = cons.meta.get("p_column_std_mean")
    print(
        describe_agreement(cons)
        + ("" if spread is None else f"; mean column-probability spread of the consensus sites {spread:.3f}")
        + " (per-site figures in consensus.csv: p_column_<network>, p_column_mean, p_column_std, ...)"
    )
    return 0


def _predict_batch(args, api, energy: float | None) -> int:
    """``napari-hrtem predict --batch``: every series of the inputs in this process, the networks loaded
    once (:func:`napari_hrtem.api.iter_predict_batch`); a progress bar per series and the summary."""
    from tqdm import tqdm

    from napari_hrtem.records import drive

    sources = api.find_focal_series(args.inputs)  # an ambiguous input fails here, in one line
    print(f"{len(sources)} focal series: {', '.join(s.name for s in sources[:5])}{'...' * (len(sources) > 5)}",
          file=sys.stderr)  # fmt: skip
    bar = tqdm(total=len(sources), desc="series", unit="series", file=sys.stderr)

    def show(event) -> None:
        row = event.info.get("row")
        if row is None:
            bar.set_postfix_str(f"{event.info.get('series')} {event.info.get('network') or 'reading'}")
            return
        bar.update(1)
        if row.status != "ok":
            bar.write(f"napari-hrtem: {row.series}: {row.status}: {row.message}", file=sys.stderr)

    steps = api.iter_predict_batch(
        sources,
        args.out,
        args.networks or None,
        sampling=args.sampling,
        frames=args.frames,
        defocus=args.defocus,
        defocus_convention=args.defocus_convention,
        align=args.align,
        energy=energy,
        k=args.k,
        radius=args.radius,
        threshold=args.threshold,
        tile=args.tile,
        specimen_mask=not getattr(args, "no_specimen_mask", False),
        precision=getattr(args, "precision", "auto"),
        test_time_augmentation=getattr(args, "tta", False),
        rule=getattr(args, "rule", "auto"),
        overwrite=getattr(args, "overwrite", False),
        read_timeout=getattr(args, "read_timeout", None),
    )
    try:
        result = drive(steps, show)
    finally:
        bar.close()
    for row in result.rows:
        sites = " ".join(f"{c} {n}" for c, n in row.sites.items())
        what = f"{row.frames} frames, {sites}, {row.warnings} warning(s)" if row.status == "ok" else row.message
        print(f"{row.series}: {row.status} ({row.seconds:.1f} s): {what}")
    print(
        f"{len(result.ok)} of {len(result.rows)} series done in {result.seconds:.1f} s "
        f"({', '.join(result.networks)}, each loaded once); summary: {result.summary}"
    )
    return 1 if result.failed else 0


def cmd_evaluate(args) -> int:
    from napari_hrtem import api
    from napari_hrtem.analysis.metrics import format_scores, format_summary

    if args.json is not None:  # before any work: never an input file, and writable
        from napari_hrtem.io.files import check_not_input, check_output_path

        check_output_path(args.json, "--json file", folder=False)
        inputs = [p for p in (args.predicted, args.truth, args.dataset) if p]
        check_not_input(args.json, [*inputs, *_files_under(inputs)], "scores")
    if args.dataset:
        if args.predicted or args.truth:
            raise ValueError("give either PREDICTED and TRUTH, or --network with --dataset")
        if not args.network:
            raise ValueError("--dataset needs --network NAME (see `napari-hrtem networks`)")
        scores = api.evaluate_network(
            args.network, args.dataset, args.radius, threshold=args.threshold, limit=args.limit, device=args.device
        )
        print(
            f"{args.network} on {args.dataset} ({scores['samples']} samples), radius {args.radius} Å, "
            f"column probability threshold {scores['threshold']:g}"
        )
    else:
        if not (args.predicted and args.truth):
            raise ValueError("give PREDICTED and TRUTH (files or folders), or --network with --dataset")
        scores = api.score_files(args.predicted, args.truth, args.radius, network=args.network or "consensus")
        print(f"{args.predicted} against {args.truth} ({scores['samples']} sample(s)), radius {args.radius} Å")
    print(format_scores(scores))
    if scores["samples"] > 1 or "pixel_f1" in scores:
        print(format_summary(scores))
    if args.json:
        import json

        from napari_hrtem.io.files import write_atomic

        write_atomic(args.json, json.dumps(dict(radius=args.radius, scores=scores), indent=2) + "\n")
    return 0


def _files_under(paths) -> list:
    """The CSV files in the given folders (the inputs of ``evaluate`` with folders), two levels deep."""
    from pathlib import Path

    found: list = []
    for p in map(Path, paths):
        if p.is_dir():
            found += list(p.glob("*.csv")) + list(p.glob("*/*.csv"))
    return found


def cmd_networks(args) -> int:
    from napari_hrtem.api import describe_network
    from napari_hrtem.models.registry import network_sets, scan_networks

    scan = scan_networks()
    for name, net in scan.networks.items():
        try:
            print(f"{name}: {describe_network(net)}")
        except Exception as exc:  # one odd card never breaks the list
            print(f"broken: {net.weights.with_suffix('.json').name}: {' '.join(str(exc).split())[:200]}")
    try:  # which shipped networks run together, and at which beam energies (predict's default)
        for found in network_sets(scan.networks):
            print(f"shipped set for {found.label}")
    except Exception as exc:  # a list never fails on a set
        print(f"shipped sets: not known ({' '.join(str(exc).split())[:200]})")
    for path, why in scan.broken:
        print(f"broken: {why}  [{path}]")
    for path, why in scan.ignored:
        print(f"ignored: {why}  [{path}]")
    if not scan.networks:
        print("no networks found")
        return 1
    return 0


def cmd_simulate(args) -> int:
    from pathlib import Path

    import numpy as np

    from napari_hrtem.api import MicroscopeParameters, simulate
    from napari_hrtem.io.files import check_output_path

    check_output_path(args.out, "output file", folder=False)  # before the simulation
    energy = _energy_ev(args)
    sim = simulate(
        args.size,
        args.sampling,
        graphene_layers=args.graphene_layers,
        rotation=args.rotation,
        microscope=None if args.random_microscope else MicroscopeParameters(defocus=args.defocus, dose=args.dose),
        draw_microscope=args.random_microscope,
        seed=args.seed,
        energy=energy,
    )
    from napari_hrtem.io.files import write_atomic

    out = Path(args.out)
    if not out.name.endswith(".npz"):  # as numpy.savez names it
        out = out.with_name(out.name + ".npz")
    defoci = sim.microscope.defoci
    arrays = dict(
        images=sim.series.images,
        sampling=args.sampling,
        energy=sim.microscope.energy,
        defocus=defoci,
        params=str(sim.microscope.to_dict()),
    )
    write_atomic(out, lambda fh: np.savez(fh, **arrays))  # temporary file, fsync, rename: never a truncated .npz
    sim.truth.write_csv(out.with_suffix(".truth.csv"))
    print(
        f"wrote {out} {sim.series.images.shape} at {args.sampling} Å/px, {sim.microscope.energy / 1e3:g} kV, "
        f"defocus {np.round(defoci, 1)} Å (abTEM sign), and {out.with_suffix('.truth.csv')} {sim.sample.counts()}"
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
    print(table.describe())
    print(f"wrote {args.out}")
    return 0


def cmd_interpolate(args) -> int:
    from napari_hrtem.training.jobs import interpolate_networks

    result = interpolate_networks(
        args.start,
        args.fine_tuned,
        args.alpha,
        validation=args.validation or None,
        name=args.name,
        out=args.out,
        overwrite=args.overwrite,
        record=dict(command=" ".join(["napari-hrtem", *sys.argv[1:]]) if sys.argv else ""),
        progress=lambda event: print(event.stage, file=sys.stderr),
    )
    return _report_saved(result)


def cmd_parameters(args) -> int:
    from napari_hrtem.simulation.parameters import parameter_file_text, write_parameter_file

    if args.out:
        print(f"wrote {write_parameter_file(args.out, args.file)}")
    else:
        print(parameter_file_text(args.file).rstrip("\n"))
    return 0


def _add_dataset(sub) -> None:
    """The ``dataset`` command's options."""
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
    p.add_argument(
        "--phonon-configs",
        type=int,
        help="frozen-phonon configurations per exit wave (default: the --config file's, else 4)",
    )
    p.add_argument(
        "--config",
        metavar="PARAMS",
        help="parameter-range file (JSON or YAML, over thesis Table 1): structures, microscopes, beam energy "
        "and multislice settings (simulation.*)",
    )
    p.add_argument(
        "--energy",
        type=float,
        help="beam energy, kV, of the exit waves and their images (default: the --config file's microscope.energy, else 50 kV); given with --config it replaces the file's, also in the record",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_dataset)


def _add_simulate_dataset(sub) -> None:
    """The ``simulate-dataset`` command's options."""
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
    p.add_argument(
        "--phonon-configs",
        type=int,
        help="frozen-phonon configurations per exit wave (default: the --config file's simulation.phonon_configs, "
        "else 4)",
    )
    p.add_argument(
        "--wave-sampling",
        type=float,
        help="largest exit-wave sampling, Å (default: the --config file's simulation.wave_sampling, else 0.05)",
    )
    p.add_argument(
        "--slice-thickness",
        type=float,
        help="multislice slice thickness, Å (default: the --config file's simulation.slice_thickness, else 0.5)",
    )
    p.add_argument(
        "--energy",
        type=float,
        help="beam energy, kV, of the exit waves and their images (default: the --config file's microscope.energy, else 50 kV); given with --config it replaces the file's, also in the record",
    )
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


def _add_train(sub) -> None:
    """The ``train`` command's options."""
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
        "parameters for every focal series of every batch, drawn from the ranges each store recorded (thesis "
        "Table 1 for stores made without --config), at its beam energy",
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
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="architecture setting (a number or true/false), e.g. base_channels=16; repeat for more. With --init "
        "only, for an MSD-net, depth=N (a deeper copy that starts computing what the network computes) and "
        "checkpoint=false (keep each layer's output instead of recomputing it: faster, more memory)",
    )
    p.add_argument(
        "--validate-every",
        type=int,
        default=500,
        help="steps between validations (and at the last step); 0: only at the last step",
    )
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (1-1024; default: torch's)")
    p.add_argument(
        "--name",
        help="network name (default: my-<architecture>): letters, digits and . _ - +, at most 64 characters; "
        "not a shipped network's name nor consensus/predict/specimen_mask",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a network of that name in the output folder")
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
    p.add_argument(
        "--class-weights",
        nargs=4,
        type=float,
        metavar=("MO", "S2", "S", "BACKGROUND"),
        help="loss weight of each class, > 0 (default: 1 1 3 0.5; a larger S weight makes the single-S "
        "vacancy columns count more)",
    )
    p.add_argument(
        "--log-every",
        type=int,
        default=10,
        help="steps between progress lines (and at the last step); 0: only at the last step",
    )
    p.add_argument("--checkpoint-dir", help="folder of checkpoint.pt (default: OUT/NAME.checkpoint)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=200,
        help="steps between checkpoints (written atomically; and at the last step); 0: only at the last step",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint (same settings) instead of starting afresh"
    )
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.set_defaults(func=cmd_train)


def _add_predict(sub) -> None:
    """The ``predict`` command's options."""
    p = sub.add_parser("predict", help="find and classify atomic columns with every network, and their consensus")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="one file holding an (N, H, W) focal series, or one file per image in order of increasing defocus; "
        "with --batch: many focal series (see --batch)",
    )
    p.add_argument(
        "--batch",
        action="store_true",
        help="each INPUT is one or more focal series, run in this one process with the networks loaded once: a "
        "multi-frame file; a folder of single images (the frames of one series); a folder of multi-frame files "
        "or of such folders (one series each); or a quoted glob ('data/*.emd'). Writes --out/<series>/ per "
        "series and --out/summary.csv; a series that fails is listed there and the others go on (exit status 1)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder: <network>.csv, consensus.csv, specimen_mask.tif, predict.json; a new or empty folder, "
        "or one of an earlier predict (whose files this run replaces; those it does not rewrite are removed); "
        "with --batch: a folder per series (named after its file or folder) and summary.csv",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a folder that holds other files too (only the prediction's own files are replaced)",
    )
    p.add_argument("--sampling", type=float, help="Å/px, needed only when the file carries no calibration")
    p.add_argument(
        "--networks", nargs="+", help="networks to run (default: the shipped ones; see `napari-hrtem networks`)"
    )
    p.add_argument("--k", type=int, help="least number of agreeing networks for the consensus (default: majority)")
    p.add_argument("--radius", type=float, default=0.5, help="consensus agreement radius, Å (> 0, at most 5)")
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
        "--energy",
        type=float,
        metavar="KV",
        help="beam energy, kV, when the file records none (or a wrong one): checked against the energy the "
        "networks were trained at and recorded in predict.json",
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
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="arithmetic of the networks: bfloat16 is ~1.5-2x faster where the CPU (AVX512-BF16, AMX) or GPU "
        "computes it natively, sites within 0.1 Å of float32's; auto: bfloat16 there, float32 elsewhere",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average each network over the 8 symmetries of the pixel grid (90° rotations, "
        "mirror images); 8x the network time, fewer misclassified columns (docs: accuracy)",
    )
    p.add_argument(
        "--rule",
        choices=["auto", "sum", "same-class", "learned"],
        default="auto",
        help="consensus rule: learned (a combiner trained with the shipped set weighs the networks), sum (the "
        "summed class probabilities of the networks that found a column), same-class; auto: learned for the "
        "shipped sets at their own thresholds, sum otherwise",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        metavar="SECONDS",
        help="time limit for reading one HDF5-based file (.emd), read in a child process; a damaged "
        "file can make the HDF5 library loop forever (default 60, or NAPARI_HRTEM_READ_TIMEOUT)",
    )
    p.add_argument(
        "--no-specimen-mask",
        action="store_true",
        help="keep every site; by default sites outside the specimen (vacuum, amorphous material: no lattice) "
        "are dropped and the mask is written as specimen_mask.tif",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "evaluate",
        help="atomic F1 (per class, overall, 10th percentile), RMS position error and "
        "pixel F1 of predicted against true sites, or of a network on a dataset",
    )
    p.add_argument("predicted", nargs="?", help="CSV with y,x,class (Å), or a folder of NAME.csv / NAME/<network>.csv")
    p.add_argument("truth", nargs="?", help="CSV with y,x,class (Å), or a folder of NAME.truth.csv / NAME.csv")
    p.add_argument("--radius", type=float, default=0.5, help="matching radius, Å (> 0, at most 5)")
    p.add_argument(
        "--network",
        help="with --dataset: the network to score; with folders: which NAME/<network>.csv (default consensus)",
    )
    p.add_argument("--dataset", help="a dataset (.npz from `napari-hrtem dataset`) to run --network on; adds pixel F1")
    p.add_argument("--limit", type=int, help="score only the first N samples of --dataset (N >= 1)")
    p.add_argument(
        "--threshold",
        type=float,
        help="column probability threshold (with --dataset; default: the network's own, from its card)",
    )
    p.add_argument("--device", help="cuda or cpu (with --dataset)")
    p.add_argument("--json", help="also write the scores to this JSON file")
    p.set_defaults(func=cmd_evaluate)


def _add_networks(sub) -> None:
    """The ``networks`` command's options."""
    p = sub.add_parser("networks", help="list the available networks and their model cards' key facts")
    p.set_defaults(func=cmd_networks)


def _add_simulate(sub) -> None:
    """The ``simulate`` command's options."""
    p = sub.add_parser("simulate", help="simulate one MoS2 focal series (.npz) with its ground truth (.truth.csv)")
    p.add_argument("out", help="output .npz (images, sampling, defocus)")
    p.add_argument("--size", type=int, default=256, help="image size, px")
    p.add_argument("--sampling", type=float, default=0.22, help="Å/px")
    p.add_argument("--graphene-layers", type=int, default=0)
    p.add_argument("--rotation", type=float, help="flake rotation, degrees (default: thesis recipe)")
    p.add_argument("--defocus", type=float, default=-50.0, help="defocus of the first image, Å (abTEM sign)")
    p.add_argument("--dose", type=float, default=1e4, help="e/Å²")
    p.add_argument(
        "--energy", type=float, help="beam energy, kV (default: 50 kV, thesis Table 1; also with --random-microscope)"
    )
    p.add_argument("--random-microscope", action="store_true", help="draw all microscope parameters from Table 1")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_simulate)


def _add_view(sub) -> None:
    """The ``view`` command's options."""
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


def _add_interpolate(sub) -> None:
    """The ``interpolate`` command's options."""
    p = sub.add_parser(
        "interpolate",
        help="a network whose weights lie between a network and a fine-tuned copy of it (WiSE-FT)",
        description="Weights (1 - alpha) START + alpha FINE_TUNED (Wortsman et al., CVPR 2022): fine-tuning for "
        "new conditions often costs accuracy on the first ones, and the interpolation keeps most of both.",
    )
    p.add_argument("start", help="the network fine-tuning started from (a name or a model card .json)")
    p.add_argument("fine_tuned", help="the fine-tuned network (a name or a model card .json)")
    p.add_argument("--alpha", type=float, required=True, help="weight of the fine-tuned network, 0-1")
    p.add_argument("--validation", help="held-out set: validation F1 and a newly calibrated threshold")
    p.add_argument("--name", help="the new network's name (default FINE_TUNED-a<100 alpha>)")
    p.add_argument("--out", help="folder for the weights and model card (default: the user networks folder)")
    p.add_argument("--overwrite", action="store_true", help="replace a network of that name in the output folder")
    p.set_defaults(func=cmd_interpolate)


def _add_parameters(sub) -> None:
    """The ``parameters`` command's options."""
    p = sub.add_parser("parameters", help="show or write the simulation parameter ranges (thesis Table 1)")
    p.add_argument("--file", help="a YAML/JSON parameter file to check and merge over the defaults")
    p.add_argument("--out", help="write the ranges to this .yaml/.json (a template to edit)")
    p.set_defaults(func=cmd_parameters)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``napari-hrtem: error: ...``, exit status 2
    (argparse prints the usage first; ``--help`` shows it)."""

    def error(self, message: str):  # type: ignore[override]
        command = " ".join(self.prog.split()[1:])  # the subcommand, if any
        self.exit(2, f"napari-hrtem: error: {command + ': ' if command else ''}{' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="napari-hrtem", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_dataset,
        _add_simulate_dataset,
        _add_train,
        _add_interpolate,
        _add_predict,
        _add_networks,
        _add_simulate,
        _add_view,
        _add_parameters,
    ):
        add(sub)
    return parser


#: Loggers of the file-reading libraries: their warnings about a damaged file come before the
#: error that names it, so the CLI keeps them quiet (an error stays one line).
LIBRARY_LOGGERS = ("tifffile", "rsciio", "h5py", "mrcfile")


def main(argv=None) -> int:
    import logging

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a bad option: one line printed (2)
        return exc.code if isinstance(exc.code, int) else 2
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        return args.func(args)
    except (ValueError, OSError, MemoryError) as exc:
        print("napari-hrtem: error: " + " ".join(str(exc).split()), file=sys.stderr)  # one line
        return 2


if __name__ == "__main__":
    sys.exit(main())
