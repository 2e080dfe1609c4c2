"""Fine-tuning on corrected labels of an experimental focal series, mixed with simulated data.

A network trained on simulations meets real images that differ in noise, drift and
contamination. :func:`labelled_dataset` cuts the labelled focal series into training tiles at
the network's sampling, with the preprocessing of its model card; :func:`mix_datasets` mixes them
with simulated focal series so that the network does not forget what it learned there; and
:func:`fine_tune` continues the network's training from its weights, with the loss of
:func:`napari_hrtem.training.trainer.train`, as a generator of the same progress events.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import numpy as np

from napari_hrtem.io.sites import Sites
from napari_hrtem.training.datasets import stack_items
from napari_hrtem.training.trainer import TrainingSettings

#: Settings of fine-tuning: fewer steps and a smaller learning rate than training from scratch,
#: so that the network stays close to what it learned.
FINE_TUNING = TrainingSettings(steps=200, lr=2e-4, validate_every=100, validation_limit=20, log_every=5)

if TYPE_CHECKING:
    from napari_hrtem.models.card import ModelCard
    from napari_hrtem.training.trainer import TrainingSettings


def labelled_dataset(
    images: np.ndarray,
    sampling: float,
    sites: Sites,
    card: ModelCard,
    *,
    tile: int = 128,
    stride: int | None = None,
    min_density: float = 0.5,
) -> dict:
    """Training tiles of a labelled experimental focal series, as a network of ``card`` sees them.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` raw focal series, increasing defocus.
    sampling : float
        Å/px of ``images``.
    sites : Sites
        The corrected labels, Å.
    card : ModelCard
        The model card of the network to fine-tune: ``sampling``, ``normalization_distance``,
        ``support_filter``, ``n_images``.
    tile, stride : int
        Tile size and step in px at the network's sampling (stride defaults to 3/4 of a tile); an
        image smaller than a tile gives tiles of its size rounded down to a multiple of 16 px.
    min_density : float
        Tiles with fewer labelled sites per Å² than this fraction of the median over the tiles are
        left out, so that unlabelled parts of the image are not taught as background.

    Returns
    -------
    dict
        ``images`` ``(M, N, tile, tile)`` float32, ``labels`` ``(M, tile, tile)`` uint8, the sites
        of each tile (``sites``, ``site_classes``, ``site_index``, Å in the tile) and ``sampling``.

    Raises
    ------
    ValueError
        If the series does not fit the network or no tile holds labels.
    """
    from napari_hrtem.analysis.filters import preprocess, resample
    from napari_hrtem.training.labels import class_map

    images = np.asarray(images, np.float32)
    if images.ndim != 3 or images.shape[0] != card.n_images:
        raise ValueError(f"the network needs a focal series of {card.n_images} images, got shape {images.shape}")
    if len(sites) == 0:
        raise ValueError("the labels hold no sites")
    net_sampling = float(card.sampling)
    work = preprocess(
        resample(images, sampling, net_sampling),
        net_sampling,
        remove_support=card.support_filter,
        normalization_distance=card.normalization_distance,
    )
    h, w = work.shape[-2:]
    tile = min(tile, min(h, w) // 16 * 16)  # a small image gives one smaller tile
    if tile < 32:
        raise ValueError(f"the image ({h}x{w} px at {net_sampling} Å/px) is too small to train on")
    labels = class_map(sites.yx, sites.classes, (h, w), net_sampling)
    stride = stride or tile * 3 // 4

    def starts(n):
        return sorted({*range(0, n - tile + 1, stride), n - tile})

    px = sites.yx / net_sampling
    tiles = []
    for r in starts(h):
        for c in starts(w):
            inside = (px[:, 0] >= r) & (px[:, 0] < r + tile) & (px[:, 1] >= c) & (px[:, 1] < c + tile)
            tiles.append((r, c, inside))
    density = np.array([t[2].sum() for t in tiles], float)
    keep = density >= min_density * np.median(density[density > 0]) if np.any(density > 0) else density > 0
    if not np.any(keep):
        raise ValueError("no tile of the image holds labelled sites")
    items = []
    for (r, c, inside), k in zip(tiles, keep):
        if k:
            items.append(
                dict(
                    images=work[:, r : r + tile, c : c + tile],
                    labels=labels[r : r + tile, c : c + tile],
                    sites=sites.yx[inside] - np.array([r, c]) * net_sampling,
                    classes=sites.classes[inside],
                    sampling=net_sampling,
                )
            )
    return stack_items(items)


def mix_datasets(real: dict, simulated: dict | None, simulated_fraction: float = 0.5) -> dict:
    """Training data with ``simulated_fraction`` of the samples drawn from ``simulated``.

    The real tiles are repeated so that batches drawn uniformly hold about the asked share of
    each (only ``images`` and ``labels`` are kept: what :func:`fine_tune` trains on).
    """
    if simulated is None or simulated_fraction <= 0:
        return dict(images=real["images"], labels=real["labels"])
    if not 0 < simulated_fraction < 1:
        raise ValueError(f"the simulated fraction must lie in [0, 1), got {simulated_fraction}")
    n_real, n_sim = len(real["images"]), len(simulated["images"])
    repeat = max(1, round((1 - simulated_fraction) / simulated_fraction * n_sim / n_real))
    return dict(
        images=np.concatenate([np.repeat(real["images"], repeat, axis=0), simulated["images"]]),
        labels=np.concatenate([np.repeat(real["labels"], repeat, axis=0), simulated["labels"]]),
    )


def fine_tune(
    network,
    data: dict,
    settings: TrainingSettings | None = None,
    *,
    validation: dict | None = None,
    **options,
) -> Generator[dict, None, None]:
    """Continue training a network from its weights; a generator of progress events.

    Same loss, augmentation and events as :func:`napari_hrtem.training.trainer.train` (a smaller
    learning rate than for training from scratch keeps the network close to what it learned).
    The whole job (tiles, mixing, calibration, model card, saving) is
    :func:`napari_hrtem.training.jobs.iter_fine_tune`.

    Parameters
    ----------
    network : napari_hrtem.models.registry.Network
        The network to start from (left unchanged on disk): its architecture, settings and weights.
    data : dict
        ``images`` ``(M, N, H, W)`` preprocessed and ``labels`` ``(M, H, W)``
        (:func:`mix_datasets`).
    settings : TrainingSettings, optional
        Default :data:`napari_hrtem.training.finetuning.FINE_TUNING` (200 steps, learning rate 2e-4).
    validation : dict, optional
        Scored with atomic F1 (:func:`napari_hrtem.training.trainer.evaluate_model`).
    **options
        Fields of :class:`~napari_hrtem.training.trainer.TrainingSettings` overriding ``settings``.

    Yields
    ------
    dict
        As :func:`napari_hrtem.training.trainer.train`; the last event has ``done``, ``model`` and
        ``validation``.
    """
    from napari_hrtem.training.trainer import train

    card = network.card
    initial = network.load("cpu").state_dict()
    yield from train(
        card.architecture,
        data,
        settings or FINE_TUNING,
        config=card.config,
        validation=validation,
        initial_state=initial,
        **options,
    )
