"""Training on simulated focal series, as a generator of progress events.

:func:`train` yields small dicts (``step``, ``loss``, ``lr``; ``validation`` when validated;
``done`` with the model last) so that the CLI prints them and the GUI plots them from a worker
thread without the trainer knowing about either.

Loss: class-weighted cross-entropy on disk class maps (classes + background). Cross-entropy gives
class probabilities that the site finder reads directly (column probability and class share);
the weights (Mo 1, S2 1, S 3, background 0.5) counter the rarity of single-S columns and of
column pixels against background.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .structures import CLASSES

CLASS_WEIGHTS = (1.0, 1.0, 3.0, 0.5)


def _augment(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """Random 90° rotation, flip and small contrast change of one ``(N, H, W)`` series + labels."""
    k = int(rng.integers(4))
    images, labels = np.rot90(images, k, axes=(1, 2)), np.rot90(labels, k)
    if rng.random() < 0.5:
        images, labels = images[:, :, ::-1], labels[:, ::-1]
    images = images * rng.uniform(0.85, 1.15) + rng.normal(0, 0.05)
    return np.ascontiguousarray(images, np.float32), np.ascontiguousarray(labels)


def evaluate_model(model, data: dict, *, radius: float = 0.5, threshold: float = 0.5, limit: int | None = None) -> dict:
    """Atomic F1 of a model on a loaded dataset (preprocessed images), summed over samples.

    Returns the dict of :func:`napari_hrtem.metrics.atomic_f1` (per class and overall) with
    ``f1_p10``, the 10th percentile of the per-sample overall F1, and ``samples``.
    """
    from .datasets import dataset_sites
    from .inference import find_sites, predict_probabilities
    from .metrics import atomic_f1, combine_scores

    per_sample = []
    n = len(data["images"]) if limit is None else min(limit, len(data["images"]))
    for i in range(n):
        prob = predict_probabilities(model, data["images"][i])
        sites = find_sites(prob, float(data["sampling"][i]), threshold=threshold)
        truth, truth_cls = dataset_sites(data, i)
        per_sample.append(atomic_f1(sites.yx, sites.classes, truth, truth_cls, radius=radius))
    out = combine_scores(per_sample)
    overall = [s["overall"]["f1"] for s in per_sample]
    out["f1_p10"] = float(np.percentile(overall, 10)) if overall else float("nan")
    out["samples"] = n
    return out


def train(
    architecture: str,
    data: dict,
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
) -> Iterator[dict]:
    """Train a network; a generator of progress events.

    Parameters
    ----------
    architecture : str
        A key of :data:`napari_hrtem.models.registry.ARCHITECTURES`.
    data : dict
        A training set (:func:`napari_hrtem.datasets.load_dataset`): preprocessed images
        ``(M, N, H, W)`` and class maps ``(M, H, W)``.
    validation : dict, optional
        A held-out set, scored with atomic F1 every ``validate_every`` steps and at the end.
    steps, batch_size, lr, seed :
        Adam with a cosine learning-rate decay from ``lr`` to ``lr / 20``; ``seed`` fixes the
        initialization and the batches.
    config : dict, optional
        Architecture settings (overrides of the registry's defaults).
    device : str, optional
        Default: CUDA when available, else CPU.

    Yields
    ------
    dict
        ``{"step", "steps", "loss", "lr", "seconds"}`` every ``log_every`` steps; with
        ``"validation"`` (scores) after a validation; the last event has ``"done": True``,
        ``"model"`` (in eval mode) and ``"validation"``.
    """
    import torch

    from .models.registry import build_model, select_device

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = select_device(device)
    n_images = data["images"].shape[1]
    model = build_model(architecture, n_images=n_images, n_classes=len(CLASSES) + 1, **(config or {})).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr / 20)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(CLASS_WEIGHTS, device=device))
    m = len(data["images"])
    start, running, scores = time.perf_counter(), [], None
    for step in range(1, steps + 1):
        model.train()
        idx = rng.integers(m, size=batch_size)
        pairs = [_augment(data["images"][i], data["labels"][i], rng) for i in idx]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)
        y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64)).to(device)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(float(loss.detach()))
        event = None
        if step % log_every == 0 or step == steps:
            event = dict(step=step, steps=steps, loss=float(np.mean(running)), lr=schedule.get_last_lr()[0],
                         seconds=time.perf_counter() - start)
            running = []
        if validation is not None and (step % validate_every == 0 or step == steps):
            model.eval()
            scores = evaluate_model(model, validation, limit=validation_limit)
            event = (event or dict(step=step, steps=steps, seconds=time.perf_counter() - start)) | dict(validation=scores)
        if event:
            yield event
    model.eval()
    yield dict(step=steps, steps=steps, done=True, model=model, validation=scores,
               seconds=time.perf_counter() - start)


def save_network(model, folder, name: str, card: dict) -> Path:
    """Write ``<name>.pt`` (state dict) and ``<name>.json`` (model card with the weights' SHA-256).

    Both files are written to temporary names and renamed. Returns the card's path.
    """
    import os

    import torch

    from .models.registry import parameter_count, sha256

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
    card = dict(name=name, **card, parameters=parameter_count(model), sha256=sha256(tmp_weights))
    with open(tmp_card, "w") as fh:
        fh.write(json.dumps(card, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp_weights.replace(weights)
    tmp_card.replace(card_path)
    return card_path
