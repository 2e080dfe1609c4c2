"""Training on simulated focal series, as a generator of progress events.

:func:`train` yields small dicts (``step``, ``loss``, ``lr``; ``validation`` when validated;
``done`` with the model last) so that the CLI prints them and the GUI plots them from a worker
thread without the trainer knowing about either.

Loss (``loss=``):

``"cross_entropy"`` (default)
    Class-weighted cross-entropy on disk class maps (classes + background), as in the thesis
    (``shared/seeds/001`` section 2.2: categorical cross-entropy for classification). It gives
    class probabilities that the site finder reads directly (column probability and class
    share); the weights (Mo 1, S2 1, S 3, background 0.5) counter the rarity of single-S columns
    and of column pixels against background.
``"mse"``
    Mean squared error between the softmax probabilities and Gaussian labels: the one-hot
    class maps smoothed by a Gaussian of ``gaussian_sigma`` px (all channels, so the target
    still sums to 1 per pixel), weighted per class like the cross-entropy. This is the choice of
    the exit-wave paper (``shared/seeds/004``: MSE with RMSprop) and of Gaussian-label column
    finders: the target is a smooth peak at the column centre, so a prediction off by a
    fraction of a pixel is penalised a little instead of as a wrong class at the disk's edge.
    Its gradient vanishes for confident mistakes, so it learns the classes more slowly; hence
    cross-entropy stays the default.

Optimizers (``optimizer=``): ``"adam"`` (the thesis' U-Net/U-Net++/MSD-net training) or
``"rmsprop"`` (the exit-wave paper's), both with a cosine learning-rate decay to ``lr / 20``.

Every step draws its batch (samples and augmentation: 90° rotations, flips, contrast and offset
changes of ±15 % / ±0.05) from a random generator seeded with ``(seed, rank, step)``, so a run
resumed from a checkpoint draws the very batches of an uninterrupted one, and on the CPU gives
bit-identical weights. Checkpoints (model, optimizer, schedule, step) are written atomically
(temporary file, fsync, rename), so a run killed at any moment leaves the previous checkpoint
intact.

Started by ``torchrun`` (``python -m torch.distributed.run --nproc_per_node N ...``), the
trainer joins the process group (NCCL on CUDA, gloo on the CPU) and trains a
``DistributedDataParallel`` model; ``batch_size`` is per process. Rank 0 validates and writes
checkpoints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from napari_hrtem.simulation.structures import CLASSES

CLASS_WEIGHTS = (1.0, 1.0, 3.0, 0.5)


def _augment(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """Random 90° rotation, flip and small contrast change of one ``(N, H, W)`` series + labels."""
    k = int(rng.integers(4))
    images, labels = np.rot90(images, k, axes=(1, 2)), np.rot90(labels, k)
    if rng.random() < 0.5:
        images, labels = images[:, :, ::-1], labels[:, ::-1]
    images = images * rng.uniform(0.85, 1.15) + rng.normal(0, 0.05)
    return np.ascontiguousarray(images, np.float32), np.ascontiguousarray(labels)


def _probabilities(model, data: dict, limit: int | None):
    from napari_hrtem.analysis.inference import predict_probabilities

    n = len(data["images"]) if limit is None else min(limit, len(data["images"]))
    return [predict_probabilities(model, data["images"][i]) for i in range(n)]


def _atomic_scores(probabilities, data: dict, radius: float, threshold: float) -> list[dict]:
    from napari_hrtem.analysis.inference import find_sites
    from napari_hrtem.analysis.metrics import atomic_f1
    from napari_hrtem.training.datasets import dataset_sites

    scores = []
    for i, prob in enumerate(probabilities):
        sites = find_sites(prob, float(data["sampling"][i]), threshold=threshold)
        truth, truth_cls = dataset_sites(data, i)
        scores.append(atomic_f1(sites.yx, sites.classes, truth, truth_cls, radius=radius))
    return scores


def _pixel_scores(probabilities, data: dict) -> tuple[list, list]:
    """Pixel counts with and without background per item (thesis section 4); empty without class maps.
    They do not depend on the column probability threshold."""
    from napari_hrtem.analysis.metrics import pixel_counts

    if "labels" not in data:
        return [], []
    return (
        [pixel_counts(p, data["labels"][i], p.shape[0]) for i, p in enumerate(probabilities)],
        [pixel_counts(p, data["labels"][i], p.shape[0], background=False) for i, p in enumerate(probabilities)],
    )


def evaluate_model(model, data: dict, *, radius: float = 0.5, threshold: float = 0.5, limit: int | None = None) -> dict:
    """Atomic F1 (and pixel F1) of a model on a loaded dataset (preprocessed images).

    Returns :func:`napari_hrtem.analysis.metrics.summarize`: per class and overall TP, FP, FN,
    precision, recall, F1 and RMS position error (Å) pooled over the samples, ``f1_p10`` (10th
    percentile of the per-sample overall atomic F1), ``samples``, and, when the dataset has
    class maps (``labels``), ``pixel_f1`` and ``pixel_f1_no_background`` with their 10th
    percentiles (thesis section 4).
    """
    from napari_hrtem.analysis.metrics import summarize

    probabilities = _probabilities(model, data, limit)
    return summarize(_atomic_scores(probabilities, data, radius, threshold), *_pixel_scores(probabilities, data))


#: Column probability thresholds tried by :func:`calibrate_threshold`.
THRESHOLDS = (*(round(t, 2) for t in np.arange(0.3, 0.951, 0.05)), 0.97, 0.98, 0.99)


def calibrate_threshold(
    model, data: dict, *, radius: float = 0.5, thresholds=THRESHOLDS, limit: int | None = None
) -> tuple[float, dict]:
    """The column probability threshold with the best overall atomic F1 on a validation set.

    A network's class probabilities are not calibrated: one that is unsure of many columns
    (for example a small MSD-net) gains precision from a higher threshold than 0.5. The
    probabilities are computed once and the sites found at each threshold (thesis section 4
    atomic F1, one-to-one matching within ``radius`` Å).

    Parameters
    ----------
    model : torch.nn.Module
    data : dict
        A held-out set (:func:`napari_hrtem.training.datasets.load_dataset`), not the training data.
    radius : float
        Matching radius, Å.
    thresholds : sequence of float
        Candidates in (0, 1).
    limit : int, optional
        Score only the first ``limit`` series.

    Returns
    -------
    threshold : float
        The best candidate (the smallest of equals).
    scores : dict
        ``{threshold: scores}`` for every candidate, as :func:`evaluate_model` gives them (pixel F1 included).
    """
    from napari_hrtem.analysis.metrics import summarize

    probabilities = _probabilities(model, data, limit)
    pixel = _pixel_scores(probabilities, data)
    scores = {float(t): summarize(_atomic_scores(probabilities, data, radius, float(t)), *pixel) for t in thresholds}
    best = max(scores, key=lambda t: (round(scores[t]["overall"]["f1"], 6), -t))
    return best, scores


def exit_wave_bank(bank: list[dict], n_images: int = 3, device=None) -> Callable:
    """A ``synthesize`` callable for :func:`train`: fresh microscope parameters for every series
    of every batch, from a bank of exit waves.

    The focal series are made by the batched torch synthesis (:class:`~napari_hrtem.simulation.synthesis.WaveBank`,
    :func:`~napari_hrtem.simulation.synthesis.draw_batch`: abTEM's CTF and envelope, dose noise, MTF; on
    CUDA when there is one) and preprocessed as the networks see them
    (:func:`~napari_hrtem.analysis.filters.preprocess`: support filter and local normalization).

    Parameters
    ----------
    bank : list of dict
        Each ``{"wave": ExitWave or BandLimitedWave, "labels": (H, W) uint8 class map}``
        (e.g. from :func:`napari_hrtem.simulation.imaging.exit_wave` and :func:`napari_hrtem.training.datasets.class_map`,
        or :func:`napari_hrtem.training.datastore.load_exit_waves`). All class maps have one shape; each
        wave's cell fixes its image sampling (cell / (H, W), Å/px).
    n_images : int
        Focal series length.
    device : str or torch.device, optional
        Where the images are made (default: CUDA when available, else the CPU).

    Returns
    -------
    callable
        ``synthesize(batch_size, rng) -> (images (B, N, H, W) float32 preprocessed, labels
        (B, H, W))``: each series takes a random wave of the bank and microscope parameters
        drawn from the thesis' Table 1 (:func:`~napari_hrtem.simulation.imaging.draw_microscope_parameters`).
        Reproducible from the ``rng`` on one device.

    Raises
    ------
    ValueError
        If the bank is empty, its class maps differ in shape, or a wave does not fit them
        (:class:`~napari_hrtem.simulation.synthesis.WaveBank`).
    """
    from napari_hrtem.analysis.filters import preprocess
    from napari_hrtem.simulation.synthesis import WaveBank, draw_batch

    if not bank:
        raise ValueError("the exit-wave bank is empty")
    shapes = {np.shape(item["labels"]) for item in bank}
    if len(shapes) != 1:
        raise ValueError(f"class maps of different shapes in one exit-wave bank: {sorted(shapes)}")
    labels = np.stack([np.asarray(item["labels"]) for item in bank])
    waves = WaveBank([item["wave"] for item in bank], labels.shape[1:], device=device)
    samplings = waves.samplings.cpu().numpy()

    def synthesize(batch_size: int, rng: np.random.Generator):
        images, indices, _ = draw_batch(waves, rng, batch_size, n_images=n_images)
        images = images.cpu().numpy()
        images = np.stack([preprocess(im, float(samplings[i])) for im, i in zip(images, indices)])
        return images.astype(np.float32), labels[indices]

    return synthesize


class BatchTooLargeError(ValueError):
    """A training batch does not fit in memory; the message names the largest batch that fits."""


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text
        for s in (
            "out of memory",
            "can't allocate memory",
            "not enough memory",
            "bad_alloc",
            # oneDNN (CPU convolutions) when its workspace allocation fails:
            "could not execute a primitive",
            "could not create a primitive",
        )
    )


def _gaussian_targets(labels, n_classes: int, sigma: float):
    """One-hot class maps ``(B, H, W)`` -> Gaussian-smoothed ``(B, C, H, W)`` float targets."""
    import torch
    import torch.nn.functional as F

    onehot = F.one_hot(labels.long(), n_classes).permute(0, 3, 1, 2).float()
    r = max(1, round(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=labels.device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    kernel_y = g.view(1, 1, -1, 1).repeat(n_classes, 1, 1, 1)
    kernel_x = g.view(1, 1, 1, -1).repeat(n_classes, 1, 1, 1)
    x = F.pad(onehot, (0, 0, r, r), mode="reflect")
    x = F.conv2d(x, kernel_y, groups=n_classes)
    x = F.pad(x, (r, r, 0, 0), mode="reflect")
    return F.conv2d(x, kernel_x, groups=n_classes)


def _distributed():
    """``(rank, world_size, local_rank)``; joins the process group when started by torchrun."""
    import os

    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), local


def _write_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, rename over ``path``."""
    import os

    import torch

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


CHECKPOINT_NAME = "checkpoint.pt"


def read_checkpoint(checkpoint_dir) -> dict | None:
    """The checkpoint in ``checkpoint_dir`` (``checkpoint.pt``), or ``None`` when there is none.

    Read with ``torch.load(weights_only=True)``.

    Raises
    ------
    ValueError
        If the file exists but cannot be read (naming the file).
    """
    import torch

    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any problem means a bad file
        raise ValueError(f"{path}: not a readable training checkpoint: {exc}") from exc


def train(
    architecture: str,
    data: dict | None,
    *,
    validation: dict | None = None,
    steps: int = 2000,
    batch_size: int = 8,
    lr: float = 2e-3,
    seed: int = 0,
    config: dict | None = None,
    device=None,
    validate_every: int = 500,
    validation_limit: int | None = 40,
    log_every: int = 10,
    optimizer: str = "adam",
    loss: str = "cross_entropy",
    gaussian_sigma: float = 1.5,
    checkpoint_dir=None,
    checkpoint_every: int = 200,
    resume: bool = False,
    synthesize: Callable | None = None,
    synthesize_fraction: float = 1.0,
    augment: bool = True,
    amp: bool = True,
    initial_state: dict | None = None,
) -> Iterator[dict]:
    """Train a network; a generator of progress events.

    Parameters
    ----------
    architecture : str
        A key of :data:`napari_hrtem.models.registry.ARCHITECTURES`.
    data : dict or None
        A training set (:func:`napari_hrtem.training.datasets.load_dataset`): preprocessed images
        ``(M, N, H, W)`` float32 and class maps ``(M, H, W)`` (codes of
        :data:`~napari_hrtem.simulation.structures.CLASSES`, background last). May be ``None`` when
        ``synthesize`` gives every batch.
    validation : dict, optional
        A held-out set, scored with atomic F1 every ``validate_every`` steps and at the end.
    steps, batch_size, lr, seed :
        Training length, batch (per process under DDP), initial learning rate (cosine decay to
        ``lr / 20``); ``seed`` fixes the initialization and every batch.
    config : dict, optional
        Architecture settings (overrides of the registry's defaults).
    device : str, optional
        Default: CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU.
    validate_every, validation_limit, log_every : int
        Validation period (steps) and number of held-out samples scored; event period.
    optimizer : {"adam", "rmsprop"}
    loss : {"cross_entropy", "mse"}
        See the module docstring for the reason of each.
    gaussian_sigma : float
        Width in px of the Gaussian labels of ``loss="mse"``.
    checkpoint_dir : path, optional
        Folder of ``checkpoint.pt``, written atomically every ``checkpoint_every`` steps and at
        the end (rank 0 only).
    resume : bool
        Continue from the checkpoint in ``checkpoint_dir`` when there is one (same step count,
        weights, optimizer and schedule state). The run's settings must match the checkpoint's.
    synthesize : callable, optional
        ``synthesize(batch_size, rng) -> (images, labels)``: a fresh batch, e.g. focal series
        with new microscope parameters from a bank of exit waves; ``images``
        ``(B, N, H, W)`` float32 preprocessed, ``labels`` ``(B, H, W)`` class maps (numpy or
        torch); ``rng`` is a ``numpy.random.Generator`` seeded with ``(seed, rank, step)``.
        Without ``data`` it makes every batch.
    synthesize_fraction : float
        With both ``data`` and ``synthesize``: the share of every batch that ``synthesize``
        makes (rounded to whole series); the rest is drawn from ``data``.
    augment : bool
        Random 90° rotations, flips, contrast and offset changes of every series.
    amp : bool
        Mixed precision (float16 autocast and gradient scaling) on CUDA; ignored on the CPU.
    initial_state : dict, optional
        A ``state_dict`` to start from instead of a random initialization (fine-tuning,
        :func:`napari_hrtem.training.finetuning.fine_tune`); a resumed checkpoint takes precedence.

    Yields
    ------
    dict
        ``{"step", "steps", "loss", "lr", "seconds"}`` every ``log_every`` steps; with
        ``"validation"`` (scores) after a validation; ``"checkpoint"`` (path) after writing
        one; the first event of a resumed run has ``"resumed_from"`` (step). The last event
        has ``"done": True``, ``"model"`` (unwrapped, in eval mode), ``"validation"``,
        ``"world_size"``, ``"rank"`` and, under DDP, ``"replicas_identical"``.

    Raises
    ------
    BatchTooLargeError
        When a batch does not fit in memory; the message gives the largest batch that does.
    ValueError
        For an unknown optimizer or loss, no data, or a checkpoint of other settings.
    """
    import torch

    from napari_hrtem.models.registry import build_model, select_device

    if optimizer not in ("adam", "rmsprop"):
        raise ValueError(f"unknown optimizer {optimizer!r}; use adam or rmsprop")
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"unknown loss {loss!r}; use cross_entropy or mse")
    if data is None and synthesize is None:
        raise ValueError("no training data: give a dataset or a synthesize callable")
    if not 0 <= synthesize_fraction <= 1:
        raise ValueError(f"synthesize_fraction must be between 0 and 1, got {synthesize_fraction}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs a checkpoint folder")
    rank, world, local_rank = _distributed()
    if device is None and world > 1 and torch.cuda.is_available():
        device = f"cuda:{local_rank}"
    device = select_device(device)
    if world > 1 and device.type == "cuda":
        torch.cuda.set_device(device)
    n_classes = len(CLASSES) + 1

    def draw(step, size, rng):
        made = size if data is None else 0 if synthesize is None else int(round(size * synthesize_fraction))
        images, labels = [], []
        if made:
            im, lb = synthesize(made, rng)
            images.append(im.cpu().numpy() if hasattr(im, "cpu") else np.asarray(im))
            labels.append(lb.cpu().numpy() if hasattr(lb, "cpu") else np.asarray(lb))
        if size > made:
            idx = rng.integers(len(data["images"]), size=size - made)
            images.append(data["images"][idx])
            labels.append(data["labels"][idx])
        images, labels = np.concatenate(images), np.concatenate(labels)
        if augment:
            pairs = [_augment(im, lb, rng) for im, lb in zip(images, labels)]
            images, labels = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        x = torch.from_numpy(np.ascontiguousarray(images, np.float32)).to(device)
        y = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64)).to(device)
        return x, y

    def batch_rng(step):
        return np.random.default_rng([seed, rank, step])

    settings = dict(
        architecture=architecture,
        config=dict(config or {}),
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        loss=loss,
        world_size=world,
    )
    state = None
    if resume:
        state = read_checkpoint(checkpoint_dir)
        if state is not None:
            theirs = state["settings"]
            differ = sorted(k for k in settings if theirs.get(k) != settings[k])
            if differ:
                raise ValueError(
                    f"{Path(checkpoint_dir) / CHECKPOINT_NAME}: the checkpoint was written with other "
                    "settings: " + ", ".join(f"{k} {theirs.get(k)!r} (now {settings[k]!r})" for k in differ)
                )
    start_step = state["step"] if state else 0
    first = draw(start_step + 1, batch_size, batch_rng(start_step + 1)) if start_step < steps else None
    n_images = (
        first[0].shape[1] if first is not None else (data["images"].shape[1] if data is not None else state["n_images"])
    )

    torch.manual_seed(seed)
    model = build_model(architecture, n_images=n_images, n_classes=n_classes, **(config or {})).to(device)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = torch.optim.RMSprop(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 20)
    use_amp = bool(amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    elapsed, running = 0.0, []
    if initial_state is not None and state is None:
        model.load_state_dict(initial_state)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if use_amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        elapsed, running = float(state["seconds"]), list(state["running"])
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    weights = torch.tensor(CLASS_WEIGHTS, device=device)
    ce = torch.nn.CrossEntropyLoss(weight=weights)

    def loss_of(x, y):
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits = net(x)
        logits = logits.float()
        if loss == "cross_entropy":
            return ce(logits, y)
        target = _gaussian_targets(y, n_classes, gaussian_sigma)
        err = (torch.softmax(logits, dim=1) - target) ** 2
        return (err * weights.view(1, -1, 1, 1)).mean() * n_classes / weights.sum()

    def largest_batch(size, rng):
        b = size // 2
        while b >= 1:
            failed = False
            try:
                x, y = draw(0, b, rng)
                net.zero_grad(set_to_none=True)
                loss_of(x, y).backward()
                net.zero_grad(set_to_none=True)
            except (RuntimeError, MemoryError) as exc:
                if not _is_out_of_memory(exc):
                    raise
                failed = True
            if not failed:
                return b
            net.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            b //= 2
        return 0

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if ckpt_path is not None and rank == 0:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)

    def write_checkpoint(step):
        _write_atomic(
            dict(
                step=step,
                settings=settings,
                n_images=int(n_images),
                model=model.state_dict(),
                optimizer=opt.state_dict(),
                schedule=schedule.state_dict(),
                scaler=scaler.state_dict() if use_amp else None,
                running=[float(v) for v in running],
                seconds=float(elapsed + time.perf_counter() - t0),
                validation=scores,
            ),
            ckpt_path,
        )

    t0, scores = time.perf_counter(), (state or {}).get("validation")
    for step in range(start_step + 1, steps + 1):
        model.train()
        x, y = first if step == start_step + 1 else draw(step, batch_size, batch_rng(step))
        first = None
        oom = None
        try:
            value = loss_of(x, y)
            opt.zero_grad()
            scaler.scale(value).backward()
        except (RuntimeError, MemoryError) as exc:
            if not _is_out_of_memory(exc):
                raise
            oom = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if oom is not None:
            # Outside the except block: the traceback (and the tensors its frames hold) is gone.
            del x, y
            value = None
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            fits = largest_batch(batch_size, batch_rng(step))
            shape = tuple(data["images"].shape[1:]) if data is not None else "series"
            advice = (
                f"the largest batch that fits is {fits} (--batch-size {fits})"
                if fits
                else "not even a batch of 1 fits: use smaller images or a smaller network setting"
            )
            raise BatchTooLargeError(
                f"a training batch of {batch_size} focal series {shape} does not fit in the "
                f"memory of {device} ({oom}); {advice}"
            )
        scaler.step(opt)
        scaler.update()
        schedule.step()
        running.append(float(value.detach()))
        event = None
        if step == start_step + 1 and state is not None:
            event = dict(step=step, steps=steps, resumed_from=start_step, seconds=elapsed + time.perf_counter() - t0)
        if step % log_every == 0 or step == steps:
            event = (event or {}) | dict(
                step=step,
                steps=steps,
                loss=float(np.mean(running)),
                lr=schedule.get_last_lr()[0],
                seconds=elapsed + time.perf_counter() - t0,
            )
            running = []
        if validation is not None and rank == 0 and (step % validate_every == 0 or step == steps):
            model.eval()
            scores = evaluate_model(model, validation, limit=validation_limit)
            event = (event or dict(step=step, steps=steps)) | dict(
                validation=scores, seconds=elapsed + time.perf_counter() - t0
            )
        if ckpt_path is not None and rank == 0 and (step % checkpoint_every == 0 or step == steps):
            write_checkpoint(step)
            event = (event or dict(step=step, steps=steps, seconds=elapsed + time.perf_counter() - t0)) | dict(
                checkpoint=str(ckpt_path)
            )
        if event:
            yield event
    model.eval()
    done = dict(
        step=steps,
        steps=steps,
        done=True,
        model=model,
        validation=scores,
        world_size=world,
        rank=rank,
        seconds=elapsed + time.perf_counter() - t0,
    )
    if world > 1:
        import torch.distributed as dist

        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).cpu()
        reference = flat.clone()
        dist.broadcast(reference, 0)
        same = torch.tensor([float(torch.equal(flat, reference))])
        dist.all_reduce(same, op=dist.ReduceOp.MIN)
        done["replicas_identical"] = bool(same.item() == 1.0)
    yield done


def save_network(model, folder, name: str, card) -> Path:
    """Write ``<name>.pt`` (state dict) and ``<name>.json`` (model card with the weights' SHA-256).

    Both files are written to temporary names and renamed. Returns the card's path.
    """
    import os

    import torch

    from napari_hrtem.models.registry import parameter_count, sha256

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights, card_path = folder / f"{name}.pt", folder / f"{name}.json"
    # Both files are complete (and flushed) under temporary names before either is renamed. A kill
    # between the two renames leaves new weights with the old card and the new card as
    # .<name>.json.tmp; read_network recognises it by its SHA-256 and puts it in place.
    tmp_weights, tmp_card = folder / f".{name}.pt.tmp", folder / f".{name}.json.tmp"
    with open(tmp_weights, "wb") as fh:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    from napari_hrtem.models.card import ModelCard

    fields = card.to_dict() if isinstance(card, ModelCard) else dict(card)
    fields = {k: v for k, v in fields.items() if k not in ("name", "parameters", "sha256")}
    card = dict(name=name, **fields, parameters=parameter_count(model), sha256=sha256(tmp_weights))
    with open(tmp_card, "w") as fh:
        fh.write(json.dumps(card, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp_weights.replace(weights)
    tmp_card.replace(card_path)
    return card_path
