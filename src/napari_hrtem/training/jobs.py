"""The training jobs: data in, a saved network with its model card out.

:func:`iter_train` and :func:`iter_fine_tune` are what ``napari-hrtem train`` and the Train
widget run: they gather the data (dataset files, exit-wave banks, focal series simulated on the
fly), run the trainer (:func:`napari_hrtem.training.trainer.train`), choose the column
probability threshold on the validation set (:func:`~napari_hrtem.training.trainer.calibrate_threshold`),
build the model card (:func:`build_card`) and save the network
(:func:`~napari_hrtem.training.trainer.save_network`). They are generators of
:class:`~napari_hrtem.records.Progress` events returning a :class:`~napari_hrtem.records.TrainingResult`;
:func:`train` and :func:`fine_tune` run them to the end.

Progress events: ``stage`` ``"training"`` for the trainer's events (``done``/``total`` are the
step and the number of steps; ``info`` holds ``step``, ``steps``, ``seconds``, ``loss``, ``lr``,
``validation``, ``checkpoint``, ``resumed_from`` as far as the event has them); other stages
name what is being prepared (``"simulating training set"``, ...); an event with ``info["note"]``
is a remark for the user (e.g. that there was no checkpoint to resume from).

References
----------
.. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of two-dimensional
   materials", Bachelor project, Technical University of Denmark (2024).
.. [2] J. Madsen, P. Liu, J. Kling, J. B. Wagner, T. W. Hansen, O. Winther, J. Schiøtz, "A deep
   learning approach to identify local structures in atomic-resolution transmission electron
   microscopy images", Adv. Theory Simul. 1, 1800037 (2018).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_hrtem.arguments import check_number
from napari_hrtem.models.card import ARCHITECTURES, Domain, ModelCard, check_config
from napari_hrtem.names import output_path
from napari_hrtem.records import Progress, Steps, TrainingResult, drive
from napari_hrtem.training.trainer import CHECKPOINT_NAME, TrainingSettings

if TYPE_CHECKING:
    from napari_hrtem.io.focal_series import FocalSeries
    from napari_hrtem.io.sites import Sites
    from napari_hrtem.models.registry import Network


#: Matching radius (Å) of the validation atomic F1 recorded in the model card.
VALIDATION_RADIUS = 0.5


@dataclass(frozen=True)
class SimulatedSet:
    """Focal series to simulate for training or validation (thesis recipe, Table 1).

    Attributes
    ----------
    n_samples : int
        Samples (exit waves) to simulate.
    size : int or None
        Image edge, px (None: 128 for training; the tile size for fine-tuning).
    images_per_sample : int
        Focal series per sample, each with fresh microscope parameters.
    phonon_configs : int
        Frozen-phonon configurations of each exit wave.
    seed : int
        Seed of every random draw.
    """

    n_samples: int = 50
    size: int | None = None
    images_per_sample: int = 8
    phonon_configs: int = 4
    seed: int = 0

    def recipe(self, size: int) -> dict[str, Any]:
        """The JSON record of the set (with ``size`` filled in)."""
        out = asdict(self)
        del out["size"]
        return dict(out, shape=[int(self.size or size)] * 2)


#: A training or validation set: a dataset file (``.npz`` of ``napari-hrtem dataset`` or a zarr
#: store of ``napari-hrtem simulate-dataset``), a loaded dataset dict, or focal series to simulate.
DataSource = str | os.PathLike[str] | dict | SimulatedSet


# --- settings ----------------------------------------------------------------------------------


def _value(key: str, text: str) -> int | float | bool:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(low)
    except ValueError:
        pass
    try:
        return float(low)
    except ValueError:
        raise ValueError(f"architecture settings: {key} needs a number or true/false, got {text.strip()!r}") from None


def parse_settings(settings: str | Sequence[str] | None) -> dict[str, int | float | bool]:
    """Architecture settings from ``KEY=VALUE`` text.

    Parameters
    ----------
    settings : str or sequence of str or None
        ``"base_channels=8, depth=3"`` (items separated by commas or semicolons), or a list of
        such items (the command line's ``--set KEY=VALUE`` options). None: no settings.

    Returns
    -------
    dict
        Key -> integer, else float, else boolean (``true``/``false``, any case).

    Raises
    ------
    ValueError
        For an item without ``=``, an empty key, or a value that is no number nor true/false.
    """
    if settings is None:
        return {}
    items = [settings] if isinstance(settings, str) else list(settings)
    out: dict[str, int | float | bool] = {}
    for text in items:
        for item in filter(None, (part.strip() for part in text.replace(";", ",").split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"architecture settings: {item!r} is not KEY=VALUE")
            out[key.strip()] = _value(key.strip(), value)
    return out


# --- model card --------------------------------------------------------------------------------


def build_card(
    architecture: str,
    config: Mapping[str, Any],
    *,
    n_images: int,
    sampling: float,
    training: Mapping[str, Any],
    validation: Mapping[str, Any] | None = None,
    threshold: float | None = None,
    base: ModelCard | None = None,
    domain: Domain | None = None,
) -> ModelCard:
    """The model card of a newly trained (or fine-tuned) network.

    Parameters
    ----------
    architecture : str
        A key of :data:`~napari_hrtem.models.card.ARCHITECTURES`.
    config : mapping
        Its architecture settings.
    n_images : int
        Focal series length the network takes.
    sampling : float
        Å/px of the training images (rounded to 4 digits).
    training : mapping
        How it was trained (command or widget, datasets, steps, ...).
    validation : mapping, optional
        Its validation record (recipe, radius, scores, threshold scan).
    threshold : float, optional
        The calibrated column probability threshold in (0, 1).
    base : ModelCard, optional
        The card of the network that was fine-tuned: its classes, sampling and preprocessing
        are kept (and its threshold when no new one is given); the other arguments but
        ``training``, ``validation`` and ``threshold`` are then ignored.
    domain : Domain, optional
        The input domain of the training data; default the thesis Table 1 ranges the
        simulated training sets are drawn from (:meth:`Domain.from_parameter_ranges`), with a
        sampling range that holds ``sampling``. A fine-tuned network keeps ``base``'s.

    Returns
    -------
    ModelCard
        Without name, SHA-256 and parameter count (:func:`~napari_hrtem.training.trainer.save_network`
        adds them). A new network is MoS2 with classes Mo, S2, S, a 50 Å defocus step, the
        graphene support filter (2.46 Å) and a 12 Å local normalization (thesis section 3.3).
    """
    from napari_hrtem.simulation.structures import CLASSES

    if base is not None:
        return replace(
            base,
            name=None,
            sha256="",
            parameters=None,
            training=dict(training),
            validation=None if validation is None else dict(validation),
            threshold=base.threshold if threshold is None else float(threshold),
        )
    return ModelCard(
        architecture=architecture,
        config=dict(config),
        classes=list(CLASSES),
        n_images=int(n_images),
        defocus_step=50.0,
        sampling=round(float(sampling), 4),
        normalization_distance=12.0,
        support_filter=True,
        support_lattice_constant=2.46,
        material="MoS2",
        threshold=None if threshold is None else float(threshold),
        training=dict(training),
        validation=None if validation is None else dict(validation),
        domain=domain if domain is not None else training_domain([None], sampling),
    )


def merge_ranges(all_ranges: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """One set of parameter ranges that holds each of ``all_ranges`` (None: thesis Table 1).

    Every ``[low, high]`` or single number of the ``microscope``, ``sample`` and ``vibrations``
    sections becomes the smallest range holding all of them (the beam energy of stores made at
    50 and 80 kV becomes ``[50e3, 80e3]``); other entries are the first's. The domain of a
    network trained on several exit-wave stores (:func:`training_domain`).
    """
    import copy

    from napari_hrtem.simulation.parameters import load_parameter_ranges

    table1 = load_parameter_ranges()
    items = [copy.deepcopy(dict(r)) if r else copy.deepcopy(table1) for r in all_ranges] or [table1]
    merged = items[0]

    def span(value: Any) -> tuple[float, float] | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return float(value), float(value)
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            return float(value[0]), float(value[1])
        return None

    for section in ("microscope", "sample", "vibrations"):
        for key, value in list(merged.get(section, {}).items()):
            spans = [span(item.get(section, {}).get(key)) for item in items]
            if any(sp is None for sp in spans) or key in ("n_images", "rotation_choices"):
                continue
            low, high = min(sp[0] for sp in spans), max(sp[1] for sp in spans)  # type: ignore[index]
            merged[section][key] = low if low == high and not isinstance(value, list) else [low, high]
    return merged


def training_domain(
    all_ranges: Sequence[Mapping[str, Any] | None], sampling: float, sources: Sequence[str] = ()
) -> Domain:
    """The domain of a network trained on data drawn from ``all_ranges`` (one per training set or
    exit-wave store; None: thesis Table 1): the smallest ranges holding them all
    (:func:`merge_ranges`), with a sampling range that holds ``sampling``."""
    from napari_hrtem.simulation.structures import CLASSES

    ranges = merge_ranges(all_ranges)
    low, high = (float(v) for v in ranges["microscope"]["sampling"])
    recipe = dict(simulator="napari-hrtem (training/datasets.py, training/datastore.py)")
    recipe["parameters"] = (
        "table1.yaml" if not any(all_ranges) else "the parameter ranges recorded in " + ", ".join(sources)
    )
    return Domain.from_parameter_ranges(
        ranges, classes=list(CLASSES), sampling=(min(low, float(sampling)), max(high, float(sampling))), recipe=recipe
    )


def _recorded_ranges(data: Mapping[str, Any]) -> dict | None:
    """The parameter ranges a training set records it was drawn from (its recipe's ``config``), else None."""
    recipe = data.get("recipe")
    config = recipe.get("config") if isinstance(recipe, Mapping) else None
    return dict(config) if isinstance(config, Mapping) and "microscope" in config else None


# --- data --------------------------------------------------------------------------------------


def _simulated(recipe: SimulatedSet, size: int, label: str) -> Steps[dict]:
    from napari_hrtem.training.datasets import simulate_dataset, stack_items

    if isinstance(recipe.n_samples, bool) or not isinstance(recipe.n_samples, int) or recipe.n_samples < 1:
        raise ValueError(f"samples: got {recipe.n_samples!r}; simulate at least one focal series for the {label}")
    edge = int(recipe.size or size)
    total = recipe.n_samples * recipe.images_per_sample
    items = []
    for item in simulate_dataset(
        recipe.n_samples,
        shape=(edge, edge),
        images_per_sample=recipe.images_per_sample,
        phonon_configs=recipe.phonon_configs,
        seed=recipe.seed,
    ):
        items.append(item)
        yield Progress(f"simulating {label}", len(items), total)
    return dict(stack_items(items), recipe=recipe.recipe(size))


def _load(source: DataSource, label: str, size: int = 128) -> Steps[tuple[dict, dict]]:
    """``(dataset, record)``: a source read or simulated, and its record for the model card."""
    from napari_hrtem.training.datasets import load_dataset_checked

    if isinstance(source, SimulatedSet):
        data = yield from _simulated(source, size, label)
        return data, dict(simulated=data["recipe"], focal_series=int(len(data["images"])))
    if isinstance(source, dict):
        return source, dict(recipe=source.get("recipe"), focal_series=int(len(source["images"])))
    yield Progress(f"reading {label} {Path(source).name}")
    data = load_dataset_checked(source)
    return data, dict(file=Path(source).name, recipe=data["recipe"], focal_series=int(len(data["images"])))


def _training_data(
    sources: Sequence[DataSource], banks: Sequence[str | os.PathLike[str]], bank_fraction: float, device: str | None
) -> Steps[dict]:
    """Training sets and exit-wave banks -> the trainer's ``data`` and ``synthesize``, and records."""
    from napari_hrtem.training.datastore import load_exit_waves
    from napari_hrtem.training.trainer import exit_wave_bank

    bank: list[dict] = []
    stores, store_ranges = [], []
    for store in banks:
        yield Progress(f"reading the exit waves of {Path(store).name}")
        waves = load_exit_waves(store)  # at least one (else it raises), all with their store's ranges
        bank += waves
        stores.append(dict(store=Path(store).name, exit_waves=len(waves)))
        store_ranges.append(waves[0]["ranges"])
    sets, records = [], []
    for source in sources:
        loaded, about = yield from _load(source, "training set")
        sets.append(loaded)
        records.append(about)
    data: dict | None = None
    if sets:
        data = dict(
            images=np.concatenate([d["images"] for d in sets]), labels=np.concatenate([d["labels"] for d in sets])
        )
        if bank and data["images"].shape[1:] != (3, *bank[0]["labels"].shape):
            raise ValueError(
                f"the training sets hold focal series of shape {data['images'].shape[1:]}; the exit-wave banks "
                f"make {(3, *bank[0]['labels'].shape)}: they cannot share a batch"
            )
    samplings = np.concatenate([[item["sampling"] for item in bank], *(d["sampling"] for d in sets)])
    record: dict[str, Any] = dict(datasets=records)
    if stores:
        record.update(exit_wave_banks=stores, bank_fraction=bank_fraction if data is not None else 1.0)
    return dict(
        data=data,
        synthesize=exit_wave_bank(bank, device=device) if bank else None,
        n_images=3 if data is None else int(data["images"].shape[1]),
        sampling=float(np.mean(samplings)),
        record=record,
        # the card's domain: the ranges every store and training set recorded (Table 1 where one records none)
        ranges=[*store_ranges, *(_recorded_ranges(d) for d in sets)],
        sources=[Path(str(b)).name for b in banks] + [str(r.get("file", "a simulated set")) for r in records],
    )


def _start_from(
    init: Network | str | os.PathLike[str] | None, architecture: str | None, config: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any], dict | None, dict | None]:
    """``(architecture, config, initial state, record)``: a network's weights to start from, or none."""
    if init is None:
        architecture = architecture or "unet"
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
        unknown = sorted(set(config or {}) - set(ARCHITECTURES[architecture][2]))
        if unknown:
            raise ValueError(
                f"architecture settings: unknown settings for {architecture}: {unknown}; known: "
                f"{sorted(ARCHITECTURES[architecture][2])}"
            )
        check_config(architecture, dict(config or {}), "architecture settings")  # before any network is built
        return architecture, {**ARCHITECTURES[architecture][2], **(config or {})}, None, None
    from napari_hrtem.models.registry import load_network

    start = load_network(init)
    if architecture and architecture != start.card.architecture:
        raise ValueError(f"{start.name} is a {start.card.architecture}, not a {architecture}")
    initialized_from: dict[str, Any] = dict(name=start.name, sha256=start.card.sha256)
    cfg, state = dict(start.card.config), start.load("cpu").state_dict()
    if config and start.card.architecture == "msdnet" and set(config) <= {"depth", "checkpoint"}:
        check_config("msdnet", {**cfg, **config}, "architecture settings")  # before any network is built
        if "depth" in config:
            from napari_hrtem.models.msdnet import deepened_state

            depth = int(config["depth"])
            state = deepened_state(state, cfg, depth)  # refuses a shallower one
            initialized_from["deepened"] = dict(depth=[int(cfg["depth"]), depth])
            cfg["depth"] = depth
        if "checkpoint" in config:  # how the backward pass is computed, not what the network computes
            cfg["checkpoint"] = bool(config["checkpoint"])
    elif config:
        raise ValueError(
            "architecture settings cannot change the network whose weights training starts from "
            "(except for an MSD-net: depth=N, deeper, and checkpoint=true/false)"
        )
    return start.card.architecture, cfg, state, initialized_from


def _check_fits(architecture: str, config: Mapping[str, Any], *datasets: dict | None) -> None:
    """A U-Net's ``depth`` halves the image ``depth`` times: each side must keep at least one
    pixel, ``2**depth`` px (checked once the data are known, before the network is built)."""
    if architecture not in ("unet", "unetpp"):
        return
    divisor = 2 ** int(config.get("depth", 1))
    for data in datasets:
        if data is None:
            continue
        h, w = (int(v) for v in np.shape(data["images"])[-2:])
        if min(h, w) < divisor:
            raise ValueError(
                f"architecture settings: depth {config.get('depth')} halves the images {config.get('depth')} times "
                f"and needs images of at least {divisor} px; these are {h}x{w} px (use a smaller depth)"
            )


def _default_architecture(init: Network | str | os.PathLike[str] | None, architecture: str | None) -> str:
    """The architecture a training run will have (for its default name), without building anything."""
    if architecture or init is None:
        return architecture or "unet"
    from napari_hrtem.models.registry import load_network

    return load_network(init).card.architecture


def network_exists(folder: str | os.PathLike[str], name: str) -> bool:
    """Whether ``folder`` holds a network ``name`` (its ``<name>.json`` or ``<name>.pt``)."""
    return any(output_path(folder, name, suffix).exists() for suffix in (".json", ".pt"))


def network_names_in(folder: str | os.PathLike[str]) -> list[str]:
    """The names of the networks' files in ``folder`` (stems of its ``*.json`` and ``*.pt``; none
    for a missing folder)."""
    try:
        return sorted({p.stem for p in Path(folder).iterdir() if p.suffix in (".json", ".pt")})
    except OSError:
        return []


def free_name(base: str, folder: str | os.PathLike[str] | None = None) -> str:
    """A name for a new network like ``base`` that is free in ``folder`` (default: the user networks
    folder) and none of the shipped or reserved names: ``base``, else ``base-2``, ``base-3``, ...
    (:func:`napari_hrtem.names.free_network_name`). The Train widget's default name."""
    from napari_hrtem.models.registry import user_networks_dir
    from napari_hrtem.names import free_network_name

    return free_network_name(base, network_names_in(user_networks_dir() if folder is None else folder))


def _refuse_existing(folder: Path, name: str) -> None:
    for suffix in (".json", ".pt"):
        if output_path(folder, name, suffix).exists():
            raise ValueError(
                f"{folder / (name + suffix)}: a network named {name!r} already exists; choose another name "
                f"(e.g. {free_name(name, folder)!r}) or replace it (train --overwrite; the Train widget asks first)"
            )


def check_network_target(name: str | None, default: str, folder: Path, overwrite: bool) -> str:
    """The checked name of the network a job saves into ``folder`` (before anything is built).

    ``name`` (or ``default``) must be a safe name (:func:`napari_hrtem.names.check_name`), none of
    the names ``predict`` writes, and, in the user networks folder, none of the shipped networks'
    names; without ``overwrite`` no network of that name may exist in ``folder``.
    """
    from napari_hrtem.models.registry import user_networks_dir
    from napari_hrtem.names import check_network_name, check_user_network_name

    title = default if name is None else name
    what = "network name" if name is not None else "default network name (give a name)"
    try:
        in_user_folder = folder.resolve() == user_networks_dir().resolve()
    except OSError:
        in_user_folder = False
    if in_user_folder:  # the error suggests a name free in the folder
        check_user_network_name(title, what, taken=network_names_in(folder))
    else:
        check_network_name(title, what)
    if not overwrite:
        _refuse_existing(folder, title)
    return title


# --- running -----------------------------------------------------------------------------------


def _trained(events: Generator[dict, None, None], rank: int) -> Generator[Progress, None, dict]:
    """Forward the trainer's events as :class:`Progress` (rank 0 only); returns its last event."""
    try:
        for event in events:
            if event.get("done"):
                return event
            if rank == 0:
                yield Progress("training", int(event["step"]), int(event["steps"]), dict(event))
    finally:
        events.close()
    raise RuntimeError("the trainer ended without its last event")


def _stoppable(
    steps: Steps[TrainingResult], stop: Callable[[], object] | None, checkpoints: list[Path]
) -> Steps[TrainingResult]:
    """Forward a job's events; when ``stop()`` is true after one, close the job (nothing saved)."""
    last: dict[str, Any] = {}
    try:
        while True:
            try:
                event = next(steps)
            except StopIteration as end:
                return end.value
            if event.stage == "training":
                last = event.info
            yield event
            if stop is not None and stop():
                kept = [p for p in checkpoints if p.is_file()]
                return TrainingResult(
                    None,
                    validation=last.get("validation"),
                    seconds=float(last.get("seconds", 0.0)),
                    stopped=True,
                    step=int(last.get("step", 0)),
                    checkpoint=kept[0] if kept else None,
                )
    finally:
        steps.close()


def _calibrated(
    model: Any, validation: dict | None, entry: dict | None
) -> Steps[tuple[float | None, dict | None, dict]]:
    """``(threshold, validation record, overall F1 by threshold)`` from the validation set (none without one)."""
    if validation is None:
        return None, entry, {}
    from napari_hrtem.training.trainer import calibrate_threshold

    yield Progress("choosing the column probability threshold on the validation set")
    threshold, scan = calibrate_threshold(model, validation, radius=VALIDATION_RADIUS)
    entry = entry or dict(recipe=validation.get("recipe"), radius=VALIDATION_RADIUS)
    entry.update(
        threshold=threshold,
        scores=scan[threshold],
        overall_f1_by_threshold={str(t): round(v["overall"]["f1"], 4) for t, v in scan.items()},
    )
    return threshold, entry, {t: v["overall"]["f1"] for t, v in scan.items()}


def _ddp_end(done: dict) -> bool:
    """Leave the process group of a torchrun training; True on rank 0 (which saves the network)."""
    if done["world_size"] > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return done["rank"] == 0


def _saved(
    done: dict,
    validation: dict | None,
    card_of: Callable[..., ModelCard],
    where: Path,
    name: str,
    overwrite: bool = False,
) -> Steps[TrainingResult]:
    """Calibrate, build the card, save: the job's last steps; returns the :class:`TrainingResult`."""
    from napari_hrtem.training.trainer import save_network

    result = TrainingResult(
        None,
        validation=done["validation"],
        seconds=float(done["seconds"]),
        step=int(done["step"]),
        model=done["model"],
        processes=int(done["world_size"]),
        rank=int(done["rank"]),
        replicas_identical=done.get("replicas_identical"),
    )
    if not _ddp_end(done):
        return result
    entry = None
    if done["validation"] is not None:
        recipe = (validation or {}).get("recipe")
        entry = dict(recipe=recipe, radius=VALIDATION_RADIUS, scores=done["validation"])
    threshold, entry, f1 = yield from _calibrated(done["model"], validation, entry)
    card = card_of(validation=entry, threshold=threshold, seconds=round(done["seconds"]))
    yield Progress(f"saving {name}")
    if not overwrite:
        _refuse_existing(where, name)  # another run may have saved this name meanwhile
    result.card_path = save_network(done["model"], where, name, card)
    from napari_hrtem.models.registry import read_network

    result.card = read_network(result.card_path).card  # as saved: with its name and SHA-256
    result.threshold, result.f1_by_threshold = threshold, f1 or None
    if threshold is not None and entry is not None:
        result.validation = entry["scores"]
    return result


# --- training ----------------------------------------------------------------------------------


def iter_train(
    architecture: str | None = None,
    data: DataSource | Sequence[DataSource] = (),
    *,
    validation: DataSource | None = None,
    banks: Sequence[str | os.PathLike[str]] = (),
    bank_fraction: float = 0.5,
    init: Network | str | os.PathLike[str] | None = None,
    config: Mapping[str, Any] | None = None,
    settings: TrainingSettings | None = None,
    name: str | None = None,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    record: Mapping[str, Any] | None = None,
    stop: Callable[[], object] | None = None,
) -> Steps[TrainingResult]:
    """:func:`train` as a generator of :class:`~napari_hrtem.records.Progress` events; returns
    the :class:`~napari_hrtem.records.TrainingResult`.

    ``stop``: called after every event; when it returns true the job ends there, nothing is saved
    (the last checkpoint is kept) and the result has ``stopped=True``.
    """
    from napari_hrtem.models.registry import user_networks_dir

    s = settings or TrainingSettings()
    folder = Path(out) if out is not None else user_networks_dir()
    checkpoints: list[Path] = []

    def job() -> Steps[TrainingResult]:
        replace(s, resume=False).check()  # steps, batch, ... before anything is read or built (the
        # checkpoint folder of resume may be the default one, known below)
        check_number(bank_fraction, "bank_fraction", low=0, high=1, unit="(share of every batch)")
        title = check_network_target(name, f"my-{_default_architecture(init, architecture)}", folder, overwrite)
        arch, cfg, initial_state, initialized_from = _start_from(init, architecture, config)
        run = (
            s if s.checkpoint_dir is not None else replace(s, checkpoint_dir=output_path(folder, title, ".checkpoint"))
        )
        run.check()
        checkpoints.append(Path(run.checkpoint_dir or "") / CHECKPOINT_NAME)
        if run.resume:  # a file that is not a checkpoint: refused before any data is read or simulated
            from napari_hrtem.training.trainer import read_checkpoint

            read_checkpoint(run.checkpoint_dir, complete=True)
        rank = int(os.environ.get("RANK", "0"))
        if s.threads:
            import torch

            torch.set_num_threads(s.threads)
        sources = [data] if isinstance(data, (str, os.PathLike, dict, SimulatedSet)) else list(data)
        if not sources and not banks:
            sources = [SimulatedSet(seed=s.seed)]
        got = yield from _training_data(sources, banks, bank_fraction, s.device)
        held_out = None if validation is None else (yield from _load(validation, "validation set"))[0]
        _check_fits(arch, cfg, got["data"], held_out)
        if run.resume and rank == 0 and not checkpoints[0].is_file():
            yield Progress(f"no checkpoint in {checkpoints[0].parent}: starting at step 1", info=dict(note=True))
        from napari_hrtem.training.trainer import train as trainer

        events = trainer(
            arch,
            got["data"],
            run,
            config=cfg,
            validation=held_out,
            synthesize=got["synthesize"],
            synthesize_fraction=bank_fraction,
            initial_state=initial_state,
        )
        done = yield from _trained(events, rank)
        training = {
            **(record or {}),
            **got["record"],
            "steps": s.steps,
            "batch_size": s.batch_size,
            "lr": s.lr,
            "seed": s.seed,
            "optimizer": s.optimizer,
            "loss": s.loss,
            "class_weights": list(s.loss_weights),
            "processes": int(done["world_size"]),
            **({"initialized_from": initialized_from} if initialized_from else {}),
        }

        def card_of(*, validation: dict | None, threshold: float | None, seconds: int) -> ModelCard:
            return build_card(
                arch,
                cfg,
                n_images=got["n_images"],
                sampling=got["sampling"],
                training=dict(training, seconds=seconds),
                validation=validation,
                threshold=threshold,
                domain=training_domain(got["ranges"], got["sampling"], got["sources"]),
            )

        return (yield from _saved(done, held_out, card_of, folder, title, overwrite))

    return (yield from _stoppable(job(), stop, checkpoints))


def train(
    architecture: str | None = None,
    data: DataSource | Sequence[DataSource] = (),
    *,
    validation: DataSource | None = None,
    banks: Sequence[str | os.PathLike[str]] = (),
    bank_fraction: float = 0.5,
    init: Network | str | os.PathLike[str] | None = None,
    config: Mapping[str, Any] | None = None,
    settings: TrainingSettings | None = None,
    name: str | None = None,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    record: Mapping[str, Any] | None = None,
    stop: Callable[[], object] | None = None,
    progress: Callable[[Progress], object] | None = None,
) -> TrainingResult:
    """Train a network on simulated focal series and save it with its model card.

    The network labels every pixel as Mo, S2, S or background (class-weighted cross-entropy, or
    MSE on Gaussian labels; Adam or RMSprop with a cosine decay; random rotations, flips and
    contrast changes) [1]_ [2]_. Every batch is drawn from ``(seed, rank, step)``, so a run
    resumed from its checkpoint gives the weights of an uninterrupted one. Under ``torchrun``
    the processes train one ``DistributedDataParallel`` model and rank 0 saves it. With a
    validation set, the column probability threshold with the best validation atomic F1 is
    recorded in the card (:func:`~napari_hrtem.training.trainer.calibrate_threshold`).

    Parameters
    ----------
    architecture : str, optional
        ``"unet"`` (default), ``"unetpp"`` or ``"msdnet"``; with ``init``: that network's.
    data : source or sequence of sources
        Training sets: ``.npz`` files (``napari-hrtem dataset``) or zarr stores
        (``napari-hrtem simulate-dataset``), loaded dataset dicts (``images`` ``(M, N, H, W)``
        float32 preprocessed, ``labels`` ``(M, H, W)`` class codes, ``sampling`` ``(M,)`` Å/px),
        or :class:`SimulatedSet` recipes. None and no ``banks``: ``SimulatedSet(seed=settings.seed)``
        (50 samples of 8 focal series, 128 px).
    validation : source, optional
        A held-out set (with ``sites``, ``site_classes``, ``site_index``): the atomic F1 during
        training and the threshold calibration.
    banks : sequence of path-like
        Exit-wave stores of ``napari-hrtem simulate-dataset``: focal series with fresh
        microscope parameters for every series of every batch, drawn from each store's recorded
        parameter ranges (thesis Table 1 for a store made without a parameter file) at its beam energy.
    bank_fraction : float
        With both ``data`` and ``banks``: the share of every batch made from the banks.
    init : Network or str or path-like, optional
        Start from this network's weights (and its architecture settings).
    config : mapping, optional
        Architecture settings over the defaults (:func:`parse_settings`). With ``init`` only those
        of an MSD-net that keep what it computes: ``depth`` (deeper, new layers start at zero) and
        ``checkpoint`` (gradient checkpointing on or off); others raise ValueError.
    settings : TrainingSettings, optional
        Steps, batch, learning rate, seed, optimizer, loss, periods, device (default
        ``TrainingSettings()``). Checkpoints go to ``settings.checkpoint_dir``, default
        ``out/<name>.checkpoint``.
    name : str, optional
        The network's name (default ``my-<architecture>``): letters, digits and ``. _ - +``, at
        most 64 characters (:mod:`napari_hrtem.names`), not ``consensus``, ``predict`` or
        ``specimen_mask``, and in the user networks folder not a shipped network's name (a user
        network never shadows a shipped one). Checked before anything is read or built.
    out : path-like, optional
        Folder of ``<name>.pt`` and ``<name>.json`` (default: the user networks folder).
    overwrite : bool
        Replace a network of that name in ``out``; without it such a network is an error
        (raised before training).
    record : mapping, optional
        More entries of the card's ``training`` record (e.g. ``command``, ``made_with``).
    stop : callable, optional
        See :func:`iter_train`.
    progress : callable, optional
        Called with every :class:`~napari_hrtem.records.Progress` event.

    Returns
    -------
    TrainingResult
        ``card_path``, ``card``, ``threshold``, ``validation`` (scores at that threshold),
        ``seconds``, ``model``; on a non-zero rank of ``torchrun`` nothing is saved
        (``card_path`` None).

    Raises
    ------
    ValueError
        For unreadable or mismatched data, unknown settings, a checkpoint of other settings,
        or a batch too large for memory (:class:`~napari_hrtem.training.trainer.BatchTooLargeError`,
        naming the largest batch that fits).
    NetworkError
        If ``init`` cannot be loaded.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), sections 2-4.
    .. [2] J. Madsen et al., "A deep learning approach to identify local structures in
       atomic-resolution transmission electron microscopy images", Adv. Theory Simul. 1,
       1800037 (2018).
    """
    steps = iter_train(
        architecture,
        data,
        validation=validation,
        banks=banks,
        bank_fraction=bank_fraction,
        init=init,
        config=config,
        settings=settings,
        name=name,
        out=out,
        overwrite=overwrite,
        record=record,
        stop=stop,
    )
    return drive(steps, progress)


# --- fine-tuning -------------------------------------------------------------------------------


def iter_fine_tune(
    network: Network | str | os.PathLike[str],
    series: FocalSeries | np.ndarray,
    labels: Sites,
    *,
    sampling: float | None = None,
    simulated: SimulatedSet | None = None,
    simulated_fraction: float = 0.5,
    validation: DataSource | None = None,
    settings: TrainingSettings | None = None,
    name: str | None = None,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    made_from: Mapping[str, Any] | None = None,
    record: Mapping[str, Any] | None = None,
    stop: Callable[[], object] | None = None,
) -> Steps[TrainingResult]:
    """:func:`fine_tune` as a generator of :class:`~napari_hrtem.records.Progress` events;
    returns the :class:`~napari_hrtem.records.TrainingResult` (``stop`` as in :func:`iter_train`)."""
    from napari_hrtem.models.registry import load_network, user_networks_dir
    from napari_hrtem.training.finetuning import FINE_TUNING

    s = settings or FINE_TUNING
    s.check()
    net = load_network(network)
    folder = Path(out) if out is not None else user_networks_dir()
    title = check_network_target(name, f"{net.name}-finetuned", folder, overwrite)
    images = getattr(series, "images", series)
    sampling = sampling if sampling is not None else getattr(series, "sampling", None)
    if sampling is None:
        raise ValueError("no pixel size known for the labelled focal series; give sampling= (Å/px)")
    checkpoints = [Path(s.checkpoint_dir) / CHECKPOINT_NAME] if s.checkpoint_dir is not None else []

    def job() -> Steps[TrainingResult]:
        from napari_hrtem.training.finetuning import fine_tune as tuned
        from napari_hrtem.training.finetuning import labelled_dataset, mix_datasets

        if s.threads:
            import torch

            torch.set_num_threads(s.threads)
        yield Progress("cutting the labelled series into tiles")
        real = labelled_dataset(np.asarray(images, np.float32), float(sampling), labels, net.card)
        size = int(real["images"].shape[-1])
        extra = None if simulated is None else (yield from _load(simulated, "simulated share", size))[0]
        mixed = mix_datasets(real, extra, simulated_fraction if extra is not None else 0.0)
        held_out = None if validation is None else (yield from _load(validation, "validation set", size))[0]
        done = yield from _trained(tuned(net, mixed, s, validation=held_out), 0)
        training = {
            **(record or {}),
            "fine_tuned_from": dict(name=net.name, sha256=net.card.sha256, training=net.card.training),
            "labelled": dict(made_from or {}, sites=len(labels), counts=labels.counts(), tiles=len(real["images"])),
            "simulated": None if extra is None else dict(extra["recipe"], fraction=simulated_fraction),
            "steps": s.steps,
            "batch_size": s.batch_size,
            "lr": s.lr,
            "seed": s.seed,
        }

        def card_of(*, validation: dict | None, threshold: float | None, seconds: int) -> ModelCard:
            return build_card(
                net.card.architecture,
                net.card.config,
                n_images=net.card.n_images,
                sampling=net.card.sampling,
                training=dict(training, seconds=seconds),
                validation=validation,
                threshold=threshold,
                base=net.card,
            )

        return (yield from _saved(done, held_out, card_of, folder, title, overwrite))

    return (yield from _stoppable(job(), stop, checkpoints))


def fine_tune(
    network: Network | str | os.PathLike[str],
    series: FocalSeries | np.ndarray,
    labels: Sites,
    *,
    sampling: float | None = None,
    simulated: SimulatedSet | None = None,
    simulated_fraction: float = 0.5,
    validation: DataSource | None = None,
    settings: TrainingSettings | None = None,
    name: str | None = None,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    made_from: Mapping[str, Any] | None = None,
    record: Mapping[str, Any] | None = None,
    stop: Callable[[], object] | None = None,
    progress: Callable[[Progress], object] | None = None,
) -> TrainingResult:
    """Fine-tune a network on the corrected labels of an experimental focal series.

    The labelled series is cut into tiles at the network's sampling, with its preprocessing
    (:func:`~napari_hrtem.training.finetuning.labelled_dataset`), mixed with simulated focal
    series so that the network does not forget what it learned there
    (:func:`~napari_hrtem.training.finetuning.mix_datasets`), and the network's training
    continues from its weights with the loss and augmentation of :func:`train` [1]_ [2]_. The
    new network is saved as a new name; the one it started from is left unchanged.

    Parameters
    ----------
    network : Network or str or path-like
        The network to start from (see :func:`napari_hrtem.api.load_network`).
    series : FocalSeries or numpy.ndarray
        ``(N, H, W)`` raw images ordered by increasing defocus (N: the card's ``n_images``).
    labels : Sites
        The corrected sites, Å, in the frame of ``series``.
    sampling : float, optional
        Å/px; needed for a bare array, overrides the series' own.
    simulated : SimulatedSet, optional
        Simulated focal series to mix in (``size`` None: the tile size).
    simulated_fraction : float
        Their share of every batch, in [0, 1).
    validation : source, optional
        A held-out set (see :func:`train`; a :class:`SimulatedSet` of ``size`` None: the tile
        size): validation F1 and a newly calibrated column probability threshold (without one
        the card keeps the threshold of the network it started from).
    settings : TrainingSettings, optional
        Default :data:`~napari_hrtem.training.finetuning.FINE_TUNING` (200 steps, learning rate 2e-4); no checkpoints unless
        ``settings.checkpoint_dir`` is given.
    name : str, optional
        The new network's name (default ``<network>-finetuned``; checked as in :func:`train`).
    overwrite : bool
        Replace a network of that name in ``out`` (see :func:`train`).
    out : path-like, optional
        Folder of the new network (default: the user networks folder).
    made_from : mapping, optional
        Where the images and labels came from (files), for the card.
    record : mapping, optional
        More entries of the card's ``training`` record.
    stop, progress : callable, optional
        See :func:`iter_train` and :func:`train`.

    Returns
    -------
    TrainingResult
        As :func:`train`.

    Raises
    ------
    ValueError
        If the series does not fit the network, holds no labelled tile, or has no sampling.
    NetworkError
        If the network cannot be loaded.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024).
    .. [2] J. Madsen et al., Adv. Theory Simul. 1, 1800037 (2018).
    """
    steps = iter_fine_tune(
        network,
        series,
        labels,
        sampling=sampling,
        simulated=simulated,
        simulated_fraction=simulated_fraction,
        validation=validation,
        settings=settings,
        name=name,
        out=out,
        overwrite=overwrite,
        made_from=made_from,
        record=record,
        stop=stop,
    )
    return drive(steps, progress)


# --- weight-space interpolation ------------------------------------------------------------------

#: Largest relative difference of the two networks' samplings that :func:`interpolate_networks` accepts
#: (the new network runs at the fine-tuned one's).
SAMPLING_TOLERANCE = 0.05


def interpolate_networks(
    start: Network | str | os.PathLike[str],
    fine_tuned: Network | str | os.PathLike[str],
    alpha: float,
    *,
    validation: DataSource | None = None,
    name: str | None = None,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    record: Mapping[str, Any] | None = None,
    progress: Callable[[Progress], object] | None = None,
) -> TrainingResult:
    """A network whose weights lie between a network and a fine-tuned copy of it (WiSE-FT).

    Fine-tuning on new conditions (another beam energy, contamination) can cost accuracy on the
    conditions the network was first trained for. The weights
    ``θ(α) = (1 - α) θ_start + α θ_fine_tuned`` [1]_ (Eq. 1) often keep most of both: ``α = 0`` is
    ``start``, ``α = 1`` is ``fine_tuned``. Every floating-point tensor of the state dict is
    interpolated (batch-norm running statistics included); integer tensors (batch-norm step
    counts) are the fine-tuned network's. No training step is run.

    Parameters
    ----------
    start, fine_tuned : Network or str or path-like
        The network and a network fine-tuned from it (see :func:`napari_hrtem.api.load_network`):
        the same architecture, architecture settings, classes and number of images, and samplings
        within :data:`SAMPLING_TOLERANCE` (the new network runs at the fine-tuned one's).
    alpha : float
        Weight of ``fine_tuned``, in [0, 1].
    validation : source, optional
        A held-out set (see :func:`train`): validation atomic F1 and a newly calibrated column
        probability threshold. Without one the card keeps the fine-tuned network's threshold
        and records no validation.
    name : str, optional
        The new network's name (default ``<fine_tuned>-a<100 α>``; checked as in :func:`train`).
    out : path-like, optional
        Folder of the new network (default: the user networks folder).
    overwrite : bool
        Replace a network of that name in ``out``.
    record : mapping, optional
        More entries of the card's ``training`` record (e.g. the command).
    progress : callable, optional
        Called with every :class:`~napari_hrtem.records.Progress` event.

    Returns
    -------
    TrainingResult
        ``card_path``, ``card``, ``model``, ``threshold`` and ``validation`` (with a validation
        set). The card is the fine-tuned network's (its domain: the conditions it was
        fine-tuned for, which include those of ``start``), with ``training`` recording both
        parents (name, SHA-256, training record) and ``alpha``.

    Raises
    ------
    ValueError
        If ``alpha`` is not in [0, 1], the two networks do not have the same architecture,
        settings, classes or number of images, their samplings differ by more than
        :data:`SAMPLING_TOLERANCE`, or the name is taken.
    NetworkError
        If a network cannot be loaded.

    References
    ----------
    .. [1] M. Wortsman, G. Ilharco, J. W. Kim, M. Li, S. Kornblith, R. Roelofs, R. Gontijo-Lopes,
       H. Hajishirzi, A. Farhadi, H. Namkoong, L. Schmidt, "Robust fine-tuning of zero-shot
       models", Proc. IEEE/CVF CVPR, 7959-7971 (2022).
    """
    from napari_hrtem.models.registry import load_network, user_networks_dir

    alpha = check_number(alpha, "alpha", low=0, high=1, unit="(weight of the fine-tuned network)")
    a, b = load_network(start), load_network(fine_tuned)
    for key in ("architecture", "config", "classes", "n_images", "sampling"):
        if key == "sampling" and abs(a.card.sampling / b.card.sampling - 1) <= SAMPLING_TOLERANCE:
            continue  # fine-tuning data drawn at a slightly different mean sampling
        if getattr(a.card, key) != getattr(b.card, key):
            raise ValueError(
                f"{a.name} and {b.name} differ in {key} ({getattr(a.card, key)!r} vs {getattr(b.card, key)!r}); "
                "only a network and a fine-tuned copy of it can be interpolated"
            )
    folder = Path(out) if out is not None else user_networks_dir()
    title = check_network_target(name, f"{b.name}-a{round(100 * alpha):02d}", folder, overwrite)

    def job() -> Steps[TrainingResult]:
        yield Progress(f"interpolating {a.name} and {b.name} at alpha {alpha:g}")
        model = b.load("cpu")
        first, second = a.load("cpu").state_dict(), model.state_dict()
        model.load_state_dict(
            {
                key: ((1 - alpha) * first[key].double() + alpha * value.double()).to(value.dtype)
                if value.is_floating_point()
                else value
                for key, value in second.items()
            }
        )
        model.eval()
        held_out = None if validation is None else (yield from _load(validation, "validation set"))[0]
        training = {
            **(record or {}),
            "method": "weight-space interpolation (WiSE-FT, Wortsman et al. 2022): (1 - alpha) start + alpha fine_tuned",
            "alpha": alpha,
            "start": dict(name=a.name, sha256=a.card.sha256, training=a.card.training),
            "fine_tuned": dict(name=b.name, sha256=b.card.sha256, training=b.card.training),
        }

        def card_of(*, validation: dict | None, threshold: float | None, seconds: int) -> ModelCard:
            chosen = b.card.column_threshold if threshold is None else threshold  # no validation: the fine-tuned one's
            fields = dict(b.card.to_dict(), training=training, validation=validation, threshold=chosen)
            return ModelCard.from_dict(fields, require_sha256=False)

        done = dict(model=model, validation=None, seconds=0.0, step=0, world_size=1, rank=0)
        return (yield from _saved(done, held_out, card_of, folder, title, overwrite))

    return drive(job(), progress)
