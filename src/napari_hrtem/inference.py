"""Inference: focal series -> class probability maps -> sites per class with a confidence.

Each network's own preprocessing comes from its model card: resampling to its training
sampling, the support Fourier filter, local normalization. Sites come back in the input's Å
coordinates (origin at the centre of pixel (0, 0), which resampling keeps in place).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .sites import Sites


def predict_probabilities(model, images: np.ndarray, device=None, tile: int = 512, overlap: int = 32) -> np.ndarray:
    """Class probabilities (softmax over classes + background) of a preprocessed focal series.

    Large images are processed in overlapping tiles of at most ``tile`` px (the margins of
    ``overlap`` px are discarded), so memory stays bounded and no seam appears.

    Parameters
    ----------
    model : torch.nn.Module
        A network in eval mode; its ``divisor`` attribute gives the size multiple it needs.
    images : numpy.ndarray
        ``(N, H, W)`` float32, preprocessed as the network was trained.
    device : torch.device, optional
        Default: the model's device.
    tile, overlap : int
        Tile size and overlap in px.

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)`` float32 probabilities; the last channel is the background.
    """
    import torch

    device = device or next(model.parameters()).device
    n, h, w = images.shape
    div = getattr(model, "divisor", 1)
    step = tile - 2 * overlap
    out = None
    ys = range(0, h, step) if h > tile else [0]
    xs = range(0, w, step) if w > tile else [0]
    for y0 in ys:
        for x0 in xs:
            # Window with margins, clipped to the image.
            a, b = max(y0 - overlap, 0), min(y0 + step + overlap, h) if h > tile else h
            c, d = max(x0 - overlap, 0), min(x0 + step + overlap, w) if w > tile else w
            patch = images[:, a:b, c:d]
            ph, pw = (-patch.shape[1]) % div, (-patch.shape[2]) % div
            patch = np.pad(patch, ((0, 0), (0, ph), (0, pw)), mode="reflect")
            with torch.no_grad():
                logits = model(torch.from_numpy(np.ascontiguousarray(patch))[None].to(device))
                prob = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
            if out is None:
                out = np.zeros((prob.shape[0], h, w), np.float32)
            ye, xe = (min(y0 + step, h) if h > tile else h), (min(x0 + step, w) if w > tile else w)
            out[:, y0:ye, x0:xe] = prob[:, y0 - a: ye - a, x0 - c: xe - c]
    return out


def find_sites(probabilities: np.ndarray, sampling: float, *, threshold: float = 0.5,
               min_distance: float = 1.0, class_names=None) -> Sites:
    """Sites from class probability maps.

    Columns are the local maxima of the column probability ``1 - P(background)`` above
    ``threshold`` and at least ``min_distance`` Å apart, refined to sub-pixel precision by the
    probability-weighted centroid of the 3x3 neighbourhood. Each site takes the class with the
    largest summed probability in that neighbourhood; its confidence is that class' share of the
    column probability at the site.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(C, H, W)``, classes then background last.
    sampling : float
        Å/px of the maps.
    threshold : float
        Smallest column probability of a site.
    min_distance : float
        Smallest distance between sites, Å (MoS2's closest columns are 1.82 Å apart).

    Returns
    -------
    Sites
        Positions in Å.
    """
    from skimage.feature import peak_local_max

    column = 1.0 - probabilities[-1]
    min_px = max(1, int(round(min_distance / sampling)))
    peaks = peak_local_max(column, min_distance=min_px, threshold_abs=threshold, exclude_border=False)
    h, w = column.shape
    yx, classes, confidence = [], [], []
    for r, c in peaks:
        r0, r1, c0, c1 = max(r - 1, 0), min(r + 2, h), max(c - 1, 0), min(c + 2, w)
        weights = column[r0:r1, c0:c1]
        rr, cc = np.mgrid[r0:r1, c0:c1]
        total = weights.sum()
        yx.append(((rr * weights).sum() / total, (cc * weights).sum() / total))
        summed = probabilities[:-1, r0:r1, c0:c1].sum(axis=(1, 2))
        k = int(np.argmax(summed))
        classes.append(k)
        confidence.append(float(summed[k] / max(summed.sum(), 1e-12)) * float(column[r, c]))
    kwargs = {"class_names": tuple(class_names)} if class_names else {}
    return Sites(np.array(yx).reshape(-1, 2) * sampling, np.array(classes, int), np.array(confidence), **kwargs)


def predict_sites(network, images: np.ndarray, sampling: float, *, model=None, device=None,
                  threshold: float = 0.5, progress: Callable[[str], None] | None = None) -> tuple[Sites, np.ndarray]:
    """Run one network on a raw focal series with the preprocessing of its model card.

    Parameters
    ----------
    network : napari_hrtem.models.registry.Network
        The network (card + weights).
    images : numpy.ndarray
        ``(N, H, W)`` float intensities ordered by increasing defocus; N must equal the card's
        ``n_images``.
    sampling : float
        Å/px of ``images``.
    model : torch.nn.Module, optional
        The already loaded model (saves loading it again).
    threshold : float
        Column probability threshold (see :func:`find_sites`).

    Returns
    -------
    sites : Sites
        Positions in Å in the input's frame.
    probabilities : numpy.ndarray
        ``(C, H', W')`` at the network's sampling.

    Raises
    ------
    ValueError
        If the series length does not match the card, or the images are not finite, constant,
        too small or at an implausible sampling (:func:`napari_hrtem.validation.check_focal_series`).
    """
    from . import filters
    from .validation import check_focal_series

    card = network.card
    images = check_focal_series(images, sampling, card["n_images"])  # clear errors for bad input
    if images.ndim != 3 or images.shape[0] != card["n_images"]:
        raise ValueError(f"network {network.name} needs a focal series of {card['n_images']} images, "
                         f"got shape {images.shape}")
    if not np.all(np.isfinite(images)):
        raise ValueError("the focal series holds NaN or Inf pixels")
    if not (np.isfinite(sampling) and sampling > 0):
        raise ValueError(f"sampling must be a positive number of Å/px, got {sampling}")
    net_sampling = float(card["sampling"])
    work = filters.resample(images, sampling, net_sampling)
    work = filters.preprocess(work, net_sampling, remove_support=card.get("support_filter", True),
                      normalization_distance=card["normalization_distance"])
    model = model if model is not None else network.load(device)
    probabilities = predict_probabilities(model, work)
    sites = find_sites(probabilities, net_sampling, threshold=threshold, class_names=card["classes"])
    sites.meta = dict(network=network.name, sha256=card.get("sha256"), threshold=threshold)
    return sites, probabilities


def predict_all(networks, images: np.ndarray, sampling: float, *, k: int | None = None, radius: float = 0.5,
                threshold: float = 0.5, device=None):
    """Run several networks and their consensus; a generator of progress events.

    Parameters
    ----------
    networks : sequence of Network
        The networks to run (at least one).
    images : numpy.ndarray
        ``(N, H, W)`` raw focal series ordered by increasing defocus.
    sampling : float
        Å/px of ``images``.
    k, radius :
        Consensus settings (:func:`napari_hrtem.consensus.consensus`): least votes (default a
        majority) and agreement radius in Å.
    threshold : float
        Column probability threshold of every network.

    Yields
    ------
    dict
        ``{"done": i, "total": n, "network": name}`` after each network; the last event is
        ``{"results": {name: Sites}, "consensus": Sites, "seconds": {name: s}}``.
    """
    import time

    from .consensus import consensus

    networks = list(networks)
    if not networks:
        raise ValueError("choose at least one network")
    results, seconds = {}, {}
    for i, net in enumerate(networks):
        t0 = time.perf_counter()
        results[net.name], _ = predict_sites(net, images, sampling, device=device, threshold=threshold)
        seconds[net.name] = time.perf_counter() - t0
        yield dict(done=i + 1, total=len(networks), network=net.name)
    yield dict(results=results, consensus=consensus(results, k=k, radius=radius), seconds=seconds)
