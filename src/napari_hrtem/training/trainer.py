"""Training on simulated focal series, as a generator of progress events.

:func:`train` yields small dicts (``step``, ``loss``, ``lr``; ``validation`` when validated;
``done`` with the model last) so that the CLI prints them and the GUI plots them from a worker
thread without the trainer knowing about either.

Loss (``loss=``):

``"cross_entropy"`` (default)
    Class-weighted cross-entropy on disk class maps (classes + background), as in the thesis
    (J. B. Christensen, Bachelor project, DTU (2024), section 2.2: categorical cross-entropy for
    classification). It gives
    class probabilities that the site finder reads directly (column probability and class
    share); the weights (Mo 1, S2 1, S 3, background 0.5) counter the rarity of single-S columns
    and of column pixels against background.
``"mse"``
    Mean squared error between the softmax probabilities and Gaussian labels: the one-hot
    class maps smoothed by a Gaussian of ``gaussian_sigma`` px (all channels, so the target
    still sums to 1 per pixel), weighted per class like the cross-entropy. This is the choice of
    the exit-wave paper (M. H. L. Larsen et al., Ultramicroscopy 243, 113641 (2023): MSE with
    RMSprop) and of Gaussian-label column
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
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrtem.simulation.structures import CLASSES

#: Default loss weights of the classes ``(*CLASSES, background)``: single S (the vacancies, few
#: and the scientific point) counts 3x, background (most pixels) half.
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
    from napari_hrtem.arguments import check_limit, check_radius

    radius, limit = check_radius(radius), check_limit(limit)
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
    Waves of different beam energies or parameter ranges (several stores) may share the bank: each
    is imaged at its own energy with microscope parameters drawn from its own ranges.

    Parameters
    ----------
    bank : list of dict
        Each ``{"wave": ExitWave or BandLimitedWave, "labels": (H, W) uint8 class map}`` and
        optionally ``"ranges"``, the parameter ranges to draw its microscope from
        (:func:`~napari_hrtem.simulation.parameters.load_parameter_ranges`; absent or None: thesis
        Table 1), e.g. from :func:`napari_hrtem.simulation.imaging.exit_wave` and
        :func:`napari_hrtem.training.datasets.class_map`, or :func:`napari_hrtem.training.datastore.load_exit_waves`.
        All class maps have one shape; each wave's cell fixes its image sampling (cell / (H, W), Å/px).
    n_images : int
        Focal series length.
    device : str or torch.device, optional
        Where the images are made (default: CUDA when available, else the CPU).

    Returns
    -------
    callable
        ``synthesize(batch_size, rng) -> (images (B, N, H, W) float32 preprocessed, labels
        (B, H, W))``: each series takes a random wave of the bank (uniformly over all waves) and
        microscope parameters drawn from that wave's ranges
        (:func:`~napari_hrtem.simulation.imaging.draw_microscope_parameters`) at its energy.
        Reproducible from the ``rng`` on one device.

    Raises
    ------
    ValueError
        If the bank is empty, its class maps differ in shape, or a wave does not fit them
        (:class:`~napari_hrtem.simulation.synthesis.WaveBank`).
    """
    import json
    from functools import partial

    from napari_hrtem.analysis.filters import preprocess
    from napari_hrtem.simulation.imaging import draw_microscope_parameters
    from napari_hrtem.simulation.synthesis import WaveBank, draw_batch

    if not bank:
        raise ValueError("the exit-wave bank is empty")
    shapes = {np.shape(item["labels"]) for item in bank}
    if len(shapes) != 1:
        raise ValueError(f"class maps of different shapes in one exit-wave bank: {sorted(shapes)}")
    groups: dict[tuple, list[int]] = {}  # (energy, ranges) -> indices into the bank
    for i, item in enumerate(bank):
        ranges = item.get("ranges")
        key = (float(item["wave"].energy), json.dumps(ranges, sort_keys=True) if ranges else "")
        groups.setdefault(key, []).append(i)
    parts = []
    for members in groups.values():
        ranges = bank[members[0]].get("ranges")
        draw = partial(draw_microscope_parameters, ranges=ranges) if ranges else draw_microscope_parameters
        labels = np.stack([np.asarray(bank[i]["labels"]) for i in members])
        waves = WaveBank([bank[i]["wave"] for i in members], labels.shape[1:], device=device)
        parts.append((waves, labels, waves.samplings.cpu().numpy(), draw))
    share = np.array([len(m) for m in groups.values()], float) / len(bank)

    def synthesize(batch_size: int, rng: np.random.Generator):
        # one group: the batch is drawn exactly as from a single bank (no extra draw from rng)
        counts = [batch_size] if len(parts) == 1 else rng.multinomial(batch_size, share)
        images, targets = [], []
        for (waves, labels, samplings, draw), count in zip(parts, counts):
            if count == 0:
                continue
            made, indices, _ = draw_batch(waves, rng, int(count), n_images=n_images, draw=draw)
            made = made.cpu().numpy()
            images += [preprocess(im, float(samplings[i])) for im, i in zip(made, indices)]
            targets.append(labels[indices])
        return np.stack(images).astype(np.float32), np.concatenate(targets)

    return synthesize


class BatchTooLargeError(ValueError):
    """A training batch does not fit in memory; the message names the largest batch that fits."""


def training_memory(architecture: str, config: dict | None, shape: tuple[int, ...]) -> tuple[int, int] | None:
    """Estimated memory of a training step: bytes per focal series of a batch, and bytes for the model.

    The model of ``architecture`` and ``config`` is built on PyTorch's meta device (no memory) and run on
    one series of ``shape`` ``(N, H, W)`` to count its activations; a series needs about twice their bytes
    (kept for the backward pass, and their gradients) plus three copies of the images and labels; the
    parameters need four copies (weights, gradients, Adam's two moments) and the framework about 256 MiB.
    The MSD-net runs its own autograd function, which the meta device cannot run: its feature buffer
    (one map per convolution output) is counted four times (the buffer, its gradient and a layer's input
    gradient at the peak of the backward pass, and the allocator's slack) and one layer's ``k^2 w`` tap
    maps twice (:mod:`napari_hrtem.models.msdnet`).

    Parameters
    ----------
    architecture : str
        ``"unet"``, ``"unetpp"`` or ``"msdnet"``.
    config : dict or None
        Architecture settings (the model card's ``config``).
    shape : tuple of int
        ``(N, H, W)`` of one focal series (leading axes ignored).

    Returns
    -------
    tuple of int or None
        ``(per_series, fixed)`` in bytes (float32 training), or None when the model cannot be built
        on the meta device.
    """
    import torch

    from napari_hrtem.models.registry import build_model

    n_images, h, w = (int(n) for n in shape[-3:])
    counted = [0]

    def hook(module, inputs, output) -> None:
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                counted[0] += t.numel()

    try:
        with torch.device("meta"):
            model = build_model(architecture, n_images=n_images, n_classes=len(CLASSES) + 1, **(config or {}))
        params = sum(p.numel() for p in model.parameters())
    except Exception:
        return None
    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.empty((1, n_images, h, w), device="meta"))
        activations = 8 * counted[0]
    except Exception:  # e.g. MSDNet's own autograd function
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        maps = n_images + sum(int(m.out_channels) for m in convs)
        taps = max((int(m.out_channels) * int(np.prod(m.kernel_size)) for m in convs), default=0)
        activations = 4 * (4 * maps + 2 * taps) * h * w
    finally:
        for handle in handles:
            handle.remove()
    return activations + 12 * n_images * h * w + 24 * h * w, 16 * params + 256 * 2**20


def check_batch_fits(architecture: str, config: dict | None, shape: tuple[int, ...], batch_size: int, device) -> None:
    """Refuse a training batch that cannot fit in memory before it is allocated.

    The step's memory is estimated by :func:`training_memory` and compared with the free memory of
    ``device`` (CUDA: ``torch.cuda.mem_get_info``; CPU: :func:`napari_hrtem.io.limits.available_memory`).
    When the estimate cannot be made (an architecture the meta device cannot build), nothing is refused
    here: running out of memory during training is still reported with the largest batch that fits.

    Raises
    ------
    BatchTooLargeError
        Naming the batch, the estimated and available memory, and the largest batch that fits.
    """
    import torch

    from napari_hrtem.io.limits import available_memory, human_bytes

    estimate = training_memory(architecture, config, shape)
    if estimate is None:
        return
    per_series, fixed = estimate
    if device.type == "cuda":
        avail = int(torch.cuda.mem_get_info(device)[0])
    else:
        avail = available_memory()
    fits = max(int((0.9 * avail - fixed) // per_series), 0)
    if batch_size <= fits:
        return
    advice = (
        f"the largest batch that fits is {fits} (--batch-size {fits})"
        if fits
        else "not even a batch of 1 fits: use smaller images or a smaller network setting"
    )
    raise BatchTooLargeError(
        f"a training batch of {batch_size} focal series {tuple(shape)} does not fit in the memory of {device} "
        f"(about {human_bytes(per_series * batch_size + fixed)} needed, {human_bytes(avail)} available); {advice}"
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
    """``torch.save`` to ``path`` atomically (:func:`napari_hrtem.io.files.write_atomic`: a unique
    temporary file in the same folder, fsync, rename, folder fsync).

    Two trainings sharing a checkpoint folder never write into one temporary file. On failure
    (e.g. a full disk) the temporary file is removed and the error names ``path``.
    """
    import torch

    from napari_hrtem.io.files import write_atomic

    write_atomic(path, lambda fh: torch.save(obj, fh))


CHECKPOINT_NAME = "checkpoint.pt"
#: Upper limits of :meth:`TrainingSettings.check`: more steps than anyone trains for (the thesis: a
#: few thousand), a learning rate past which every optimizer diverges, more threads than any CPU has.
#: What :func:`read_checkpoint` needs in a checkpoint (written by ``_Run.write_checkpoint``).
CHECKPOINT_KEYS = ("step", "settings", "n_images", "model", "optimizer", "schedule", "running", "seconds")
MAX_STEPS = 10_000_000
MAX_LR = 10.0
MAX_THREADS = 1024


def read_checkpoint(checkpoint_dir, *, complete: bool = False) -> dict | None:
    """The checkpoint in ``checkpoint_dir`` (``checkpoint.pt``), or ``None`` when there is none.

    Read with ``torch.load(weights_only=True)``. ``complete``: it must hold everything a run
    resumes from (:data:`CHECKPOINT_KEYS`); else a dict with a ``step`` >= 0 is enough.

    Raises
    ------
    ValueError
        If the file exists but cannot be read or is not a checkpoint (one line naming the file).
    """
    import torch

    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any problem means a bad file; the first sentence of torch's message
        why = " ".join(str(exc).split()).split(". ")[0][:160] or "empty or truncated"
        raise ValueError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: {why})") from None
    needed = CHECKPOINT_KEYS if complete else ("step",)
    missing = [k for k in needed if k not in state] if isinstance(state, dict) else list(needed)
    if missing or (complete and not isinstance(state["settings"], dict)):
        raise ValueError(
            f"{path}: not a training checkpoint of napari-hrtem train (lacks or has a wrong {', '.join(missing) or 'settings'})"
        )
    if isinstance(state["step"], bool) or not isinstance(state["step"], int) or state["step"] < 0:
        raise ValueError(f"{path}: not a training checkpoint of napari-hrtem train (step {state['step']!r})")
    return state


@dataclass
class TrainingSettings:
    """How a network is trained: the settings of :func:`train` (and of the training jobs).

    Attributes
    ----------
    steps : int
        Optimizer steps.
    batch_size : int
        Focal series per batch (per process under DDP).
    lr : float
        Initial learning rate; a cosine decay takes it to ``lr / 20`` at the last step.
    seed : int
        Fixes the initialization and every batch (drawn from ``(seed, rank, step)``).
    optimizer : {"adam", "rmsprop"}
        Adam (the thesis' training) or RMSprop (the exit-wave paper's).
    loss : {"cross_entropy", "mse"}
        See :mod:`napari_hrtem.training.trainer` for the reason of each.
    gaussian_sigma : float
        Width in px of the Gaussian labels of ``loss="mse"``.
    validate_every : int
        Steps between validations (and at the last step); 0: only at the last step.
    validation_limit : int or None
        Held-out series scored at each validation (None: all).
    log_every : int
        Steps between progress events (and at the last step); 0: only at the last step.
    checkpoint_dir : path-like or None
        Folder of ``checkpoint.pt``, written atomically (rank 0); None: no checkpoints.
    checkpoint_every : int
        Steps between checkpoints (and at the last step); 0: only at the last step.
    resume : bool
        Continue from the checkpoint in ``checkpoint_dir`` when there is one.
    augment : bool
        Random 90° rotations, flips, contrast and offset changes of every series.
    amp : bool
        Mixed precision (float16 autocast, gradient scaling) on CUDA; ignored on the CPU.
    device : str or None
        ``"cuda"``, ``"cpu"``, ...; None: CUDA when available (``cuda:LOCAL_RANK`` under torchrun).
    threads : int or None
        CPU threads of torch (None: torch's default).
    class_weights : tuple of float or None
        Loss weight of each class, in the order ``(*CLASSES, "background")`` (``(Mo, S2, S,
        background)`` for MoS2); None: :data:`CLASS_WEIGHTS`. A larger single-S weight makes the
        rare vacancy columns count more in the loss (class-weighted cross-entropy).
    """

    steps: int = 2000
    batch_size: int = 8
    lr: float = 2e-3
    seed: int = 0
    optimizer: str = "adam"
    loss: str = "cross_entropy"
    gaussian_sigma: float = 1.5
    validate_every: int = 500
    validation_limit: int | None = 40
    log_every: int = 10
    checkpoint_dir: str | os.PathLike[str] | None = None
    checkpoint_every: int = 200
    resume: bool = False
    augment: bool = True
    amp: bool = True
    device: str | None = None
    threads: int | None = None
    class_weights: tuple[float, ...] | None = None

    def check(self) -> None:
        """Raise ValueError for settings no training can run with (one line naming the setting,
        its value and the allowed range: :mod:`napari_hrtem.arguments`)."""
        from napari_hrtem.arguments import check_number, check_optional, check_seed

        check_number(self.steps, "steps", low=1, high=MAX_STEPS, integer=True)
        check_number(self.batch_size, "batch_size", low=1, integer=True)
        check_number(self.lr, "lr", low=0, low_open=True, high=MAX_LR, unit="(learning rate)")
        check_seed(self.seed)
        check_number(self.gaussian_sigma, "gaussian_sigma", low=0, low_open=True, high=100, unit="px")
        for key in ("validate_every", "log_every", "checkpoint_every"):  # 0: only at the last step
            check_number(getattr(self, key), key, low=0, integer=True, unit="steps (0: only at the last step)")
        check_optional(self.validation_limit, "validation_limit", low=1, integer=True)
        check_optional(self.threads, "threads", low=1, high=MAX_THREADS, integer=True)
        if self.optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use adam or rmsprop")
        if self.loss not in ("cross_entropy", "mse"):
            raise ValueError(f"unknown loss {self.loss!r}; use cross_entropy or mse")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch size must be at least 1, got {self.steps} and {self.batch_size}")
        if not (self.lr > 0):
            raise ValueError(f"the learning rate must be > 0, got {self.lr}")
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("resume needs a checkpoint folder")
        if self.class_weights is not None:
            names = (*CLASSES, "background")
            if len(self.class_weights) != len(names):
                raise ValueError(
                    f"class_weights needs {len(names)} numbers ({', '.join(names)}), got {len(self.class_weights)}"
                )
            for name, value in zip(names, self.class_weights):
                check_number(value, f"class weight of {name}", low=0, low_open=True, high=1000)

    @property
    def loss_weights(self) -> tuple[float, ...]:
        """The class weights of the loss: ``class_weights``, else :data:`CLASS_WEIGHTS`."""
        return tuple(float(w) for w in (CLASS_WEIGHTS if self.class_weights is None else self.class_weights))


def _every(step: int, period: int, last: int) -> bool:
    """True every ``period`` steps and at the last step (``period`` 0: only at the last)."""
    return step == last or (period > 0 and step % period == 0)


class _Batches:
    """Draws the training batches: from a dataset, a ``synthesize`` callable or both, augmented.

    Each step's batch comes from a generator seeded with ``(seed, rank, step)``.
    """

    def __init__(self, data, synthesize, fraction: float, augment: bool, device, seed: int, rank: int):
        if data is None and synthesize is None:
            raise ValueError("no training data: give a dataset or a synthesize callable")
        if not 0 <= fraction <= 1:
            raise ValueError(f"synthesize_fraction must be between 0 and 1, got {fraction}")
        self.data, self.synthesize, self.fraction = data, synthesize, fraction
        self.augment, self.device, self.seed, self.rank = augment, device, seed, rank

    @property
    def shape(self):
        """Shape of one focal series of the dataset (for messages), else ``"series"``."""
        return tuple(self.data["images"].shape[1:]) if self.data is not None else "series"

    def rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.rank, step])

    def series_shape(self, rng: np.random.Generator) -> tuple[int, ...]:
        """``(N, H, W)`` of one focal series: the dataset's, else of one synthesized series."""
        if self.data is not None:
            return tuple(int(n) for n in self.data["images"].shape[1:])
        images, _ = self.synthesize(1, rng)
        return tuple(int(n) for n in np.shape(images)[1:])

    def draw(self, size: int, rng: np.random.Generator):
        """``(x, y)``: ``size`` series ``(B, N, H, W)`` float32 and class maps ``(B, H, W)`` int64 on the device."""
        import torch

        data, synthesize = self.data, self.synthesize
        made = size if data is None else 0 if synthesize is None else int(round(size * self.fraction))
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
        if self.augment:
            pairs = [_augment(im, lb, rng) for im, lb in zip(images, labels)]
            images, labels = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        x = torch.from_numpy(np.ascontiguousarray(images, np.float32)).to(self.device)
        y = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64)).to(self.device)
        return x, y


class _Run:
    """The model, optimizer, schedule, gradient scaler and loss of one training run."""

    def __init__(self, architecture, config, n_images, s: TrainingSettings, device, world, initial_state, state):
        import torch

        from napari_hrtem.models.registry import build_model

        self.s, self.device, self.n_classes = s, device, len(CLASSES) + 1
        torch.manual_seed(s.seed)
        model = build_model(architecture, n_images=n_images, n_classes=self.n_classes, **(config or {}))
        self.model = model.to(device)
        if s.optimizer == "adam":
            self.opt = torch.optim.Adam(self.model.parameters(), lr=s.lr)
        else:
            self.opt = torch.optim.RMSprop(self.model.parameters(), lr=s.lr)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=s.steps, eta_min=s.lr / 20)
        self.use_amp = bool(s.amp) and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.elapsed, self.running = 0.0, []
        if initial_state is not None and state is None:
            self.model.load_state_dict(initial_state)
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            if self.use_amp and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.elapsed, self.running = float(state["seconds"]), list(state["running"])
        self.net = model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.weights = torch.tensor(s.loss_weights, device=device)
        self.ce = torch.nn.CrossEntropyLoss(weight=self.weights)
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        """Training time so far (of the run resumed from included)."""
        return self.elapsed + time.perf_counter() - self.t0

    def loss_of(self, x, y):
        import torch

        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            logits = self.net(x)
        logits = logits.float()
        if self.s.loss == "cross_entropy":
            return self.ce(logits, y)
        target = _gaussian_targets(y, self.n_classes, self.s.gaussian_sigma)
        err = (torch.softmax(logits, dim=1) - target) ** 2
        return (err * self.weights.view(1, -1, 1, 1)).mean() * self.n_classes / self.weights.sum()

    def backward(self, x, y):
        """Loss and gradients of one batch: ``(loss, None)``, or ``(None, error text)`` when out of memory."""
        from napari_hrtem.models.registry import is_out_of_memory

        try:
            value = self.loss_of(x, y)
            self.opt.zero_grad()
            self.scaler.scale(value).backward()
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            return None, (str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__)
        return value, None

    def update(self, value) -> None:
        """Optimizer, scaler and schedule step after :meth:`backward`."""
        self.scaler.step(self.opt)
        self.scaler.update()
        self.schedule.step()
        self.running.append(float(value.detach()))

    def too_large(self, oom: str, batches: _Batches, step: int) -> BatchTooLargeError:
        """The error for a batch that ran out of memory, with the largest batch that fits."""
        import torch

        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        size = self.s.batch_size
        fits = self._largest_batch(size, batches, batches.rng(step))
        advice = (
            f"the largest batch that fits is {fits} (--batch-size {fits})"
            if fits
            else "not even a batch of 1 fits: use smaller images or a smaller network setting"
        )
        return BatchTooLargeError(
            f"a training batch of {size} focal series {batches.shape} does not fit in the "
            f"memory of {self.device} ({oom}); {advice}"
        )

    def _largest_batch(self, size: int, batches: _Batches, rng) -> int:
        import torch

        from napari_hrtem.models.registry import is_out_of_memory

        b = size // 2
        while b >= 1:
            failed = False
            try:
                x, y = batches.draw(b, rng)
                self.net.zero_grad(set_to_none=True)
                self.loss_of(x, y).backward()
                self.net.zero_grad(set_to_none=True)
            except (RuntimeError, MemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
                failed = True
            if not failed:
                return b
            self.net.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            b //= 2
        return 0

    def write_checkpoint(self, path: Path, step: int, key: dict, n_images: int, scores) -> None:
        _write_atomic(
            dict(
                step=step,
                settings=key,
                n_images=int(n_images),
                model=self.model.state_dict(),
                optimizer=self.opt.state_dict(),
                schedule=self.schedule.state_dict(),
                scaler=self.scaler.state_dict() if self.use_amp else None,
                running=[float(v) for v in self.running],
                seconds=float(self.seconds()),
                validation=scores,
            ),
            path,
        )


def _device(s: TrainingSettings, world: int, local_rank: int):
    import torch

    from napari_hrtem.models.registry import select_device

    device = s.device
    if device is None and world > 1 and torch.cuda.is_available():
        device = f"cuda:{local_rank}"
    device = select_device(device)
    if world > 1 and device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _resumed(s: TrainingSettings, key: dict) -> dict | None:
    """The checkpoint to resume from (None: start afresh); its settings must be ``key``'s."""
    if not s.resume:
        return None
    state = read_checkpoint(s.checkpoint_dir, complete=True)
    if state is not None:
        theirs = state["settings"]
        differ = sorted(k for k in set(key) | set(theirs) if theirs.get(k) != key.get(k))
        if differ:
            raise ValueError(
                f"{Path(s.checkpoint_dir or '') / CHECKPOINT_NAME}: the checkpoint was written with other "
                "settings: " + ", ".join(f"{k} {theirs.get(k)!r} (now {key.get(k)!r})" for k in differ)
            )
    return state


def _finished(run: _Run, scores, world: int, rank: int) -> dict:
    """The last event: the model (eval mode) and, under DDP, whether every replica has the same weights."""
    import torch

    run.model.eval()
    steps = run.s.steps
    done = dict(
        step=steps,
        steps=steps,
        done=True,
        model=run.model,
        validation=scores,
        world_size=world,
        rank=rank,
        seconds=run.seconds(),
    )
    if world > 1:
        import torch.distributed as dist

        flat = torch.cat([p.detach().reshape(-1) for p in run.model.parameters()]).cpu()
        reference = flat.clone()
        dist.broadcast(reference, 0)
        same = torch.tensor([float(torch.equal(flat, reference))])
        dist.all_reduce(same, op=dist.ReduceOp.MIN)
        done["replicas_identical"] = bool(same.item() == 1.0)
    return done


def train(
    architecture: str,
    data: dict | None,
    settings: TrainingSettings | None = None,
    *,
    config: dict | None = None,
    validation: dict | None = None,
    synthesize: Callable | None = None,
    synthesize_fraction: float = 1.0,
    initial_state: dict | None = None,
    **options: Any,
) -> Generator[dict, None, None]:
    """Train a network; a generator of progress events.

    Parameters
    ----------
    architecture : str
        A key of :data:`napari_hrtem.models.card.ARCHITECTURES`.
    data : dict or None
        A training set (:func:`napari_hrtem.training.datasets.load_dataset`): preprocessed images
        ``(M, N, H, W)`` float32 and class maps ``(M, H, W)`` (codes of
        :data:`~napari_hrtem.simulation.structures.CLASSES`, background last). May be ``None`` when
        ``synthesize`` gives every batch.
    settings : TrainingSettings, optional
        Steps, batch, learning rate, seed, optimizer, loss, validation and checkpoint periods,
        device (default ``TrainingSettings()``).
    config : dict, optional
        Architecture settings (overrides of the defaults of ``ARCHITECTURES``).
    validation : dict, optional
        A held-out set, scored with atomic F1 every ``validate_every`` steps and at the end (rank 0).
    synthesize : callable, optional
        ``synthesize(batch_size, rng) -> (images, labels)``: a fresh batch, e.g. focal series
        with new microscope parameters from a bank of exit waves (:func:`exit_wave_bank`);
        ``images`` ``(B, N, H, W)`` float32 preprocessed, ``labels`` ``(B, H, W)`` class maps
        (numpy or torch); ``rng`` is a ``numpy.random.Generator`` seeded with ``(seed, rank,
        step)``. Without ``data`` it makes every batch.
    synthesize_fraction : float
        With both ``data`` and ``synthesize``: the share of every batch that ``synthesize``
        makes (rounded to whole series); the rest is drawn from ``data``.
    initial_state : dict, optional
        A ``state_dict`` to start from instead of a random initialization (fine-tuning); a
        resumed checkpoint takes precedence.
    **options
        Fields of :class:`TrainingSettings` overriding ``settings`` (``steps=12, seed=3``).

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

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), section 2.2.
    .. [2] J. Madsen, P. Liu, J. Kling, J. B. Wagner, T. W. Hansen, O. Winther, J. Schiøtz,
       "A deep learning approach to identify local structures in atomic-resolution transmission
       electron microscopy images", Adv. Theory Simul. 1, 1800037 (2018).
    """
    import torch

    s = replace(settings or TrainingSettings(), **options)
    s.check()
    if s.threads:
        torch.set_num_threads(s.threads)
    rank, world, local_rank = _distributed()
    device = _device(s, world, local_rank)
    batches = _Batches(data, synthesize, synthesize_fraction, s.augment, device, s.seed, rank)
    key = dict(
        architecture=architecture,
        config=dict(config or {}),
        seed=s.seed,
        steps=s.steps,
        batch_size=s.batch_size,
        lr=s.lr,
        optimizer=s.optimizer,
        loss=s.loss,
        # the default weights stay out of the key: checkpoints written before the setting existed still resume
        **({} if s.loss_weights == CLASS_WEIGHTS else dict(class_weights=list(s.loss_weights))),
        world_size=world,
    )
    state = _resumed(s, key)
    start = state["step"] if state else 0
    if start < s.steps:  # before the first batch is allocated: refuse one that cannot fit, naming one that does
        check_batch_fits(architecture, config, batches.series_shape(batches.rng(start + 1)), s.batch_size, device)
    first = batches.draw(s.batch_size, batches.rng(start + 1)) if start < s.steps else None
    n_images = (
        first[0].shape[1] if first is not None else (data["images"].shape[1] if data is not None else state["n_images"])
    )
    run = _Run(architecture, config, n_images, s, device, world, initial_state, state)
    ckpt = Path(s.checkpoint_dir) / CHECKPOINT_NAME if s.checkpoint_dir is not None else None
    if ckpt is not None and rank == 0:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    run.t0, scores = time.perf_counter(), (state or {}).get("validation")
    for step in range(start + 1, s.steps + 1):
        run.model.train()
        x, y = first if step == start + 1 else batches.draw(s.batch_size, batches.rng(step))
        first = None
        value, oom = run.backward(x, y)
        if oom is not None:  # outside the except block: the traceback (and the tensors it holds) is gone
            del x, y
            raise run.too_large(oom, batches, step)
        run.update(value)
        event = {}
        if step == start + 1 and state is not None:
            event = dict(step=step, steps=s.steps, resumed_from=start, seconds=run.seconds())
        if _every(step, s.log_every, s.steps):
            lr = run.schedule.get_last_lr()[0]
            event |= dict(step=step, steps=s.steps, loss=float(np.mean(run.running)), lr=lr, seconds=run.seconds())
            run.running = []
        if validation is not None and rank == 0 and _every(step, s.validate_every, s.steps):
            run.model.eval()
            scores = evaluate_model(run.model, validation, limit=s.validation_limit)
            event = (event or dict(step=step, steps=s.steps)) | dict(validation=scores, seconds=run.seconds())
        if ckpt is not None and rank == 0 and _every(step, s.checkpoint_every, s.steps):
            run.write_checkpoint(ckpt, step, key, n_images, scores)
            event = (event or dict(step=step, steps=s.steps, seconds=run.seconds())) | dict(checkpoint=str(ckpt))
        if event:
            yield event
    yield _finished(run, scores, world, rank)


def save_network(model, folder, name: str, card) -> Path:
    """Write ``<name>.pt`` (state dict) and ``<name>.json`` (model card with the weights' SHA-256).

    Both files are written to temporary names and renamed. Returns the card's path.

    Raises ValueError for a ``name`` that is not a safe network name (:mod:`napari_hrtem.names`),
    a shipped network's name in the user networks folder, or a path that would resolve outside
    ``folder``, before anything is written.
    """
    import os

    import torch

    from napari_hrtem.models.registry import parameter_count, sha256
    from napari_hrtem.names import check_network_name, output_path

    check_network_name(name)  # names are data, never paths
    folder = Path(folder)
    from napari_hrtem.models.registry import user_networks_dir
    from napari_hrtem.names import check_user_network_name

    try:
        in_user_folder = folder.resolve() == user_networks_dir().resolve()
    except OSError:
        in_user_folder = False
    if in_user_folder:  # a user network never takes a shipped network's name (the shipped one is kept)
        check_user_network_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    weights, card_path = output_path(folder, name, ".pt"), output_path(folder, name, ".json")
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
