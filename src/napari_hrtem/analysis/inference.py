"""Inference: focal series -> class probability maps -> sites per class with a confidence.

Each network's own preprocessing comes from its model card: resampling to its training
sampling, the support Fourier filter, local normalization. Sites come back in the input's Å
coordinates (origin at the centre of pixel (0, 0), which resampling keeps in place).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from napari_hrtem.io.sites import Sites

if TYPE_CHECKING:
    from napari_hrtem.models.card import ModelCard

#: Default tile edge in px (margins included). A 2560² tile of the shipped MSD-net takes about
#: 2.7 GB of activations, the U-Net about 1 GB; on CUDA an out-of-memory error halves it.
DEFAULT_TILE = 2560


def _device_of(model):
    """The device of a model's first parameter or buffer (the CPU for one without tensors)."""
    import itertools

    import torch

    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device


#: Measured receptive-field margins by architecture (see :func:`receptive_margin`).
_MARGINS: dict[tuple, int] = {}


def receptive_margin(model, *, max_size: int = 2048) -> int:
    """Half-width in px of a network's receptive field, rounded up to its size multiple.

    A model may state it as an integer attribute ``receptive_margin``; otherwise it is measured
    once (and stored on the model): a random input is run with and without a strong change of
    its centre pixel, and the farthest output pixel that changes at all gives the half-width
    (the probe grows from 256 px until the change stays inside it; measured once per
    architecture and configuration in a session); 10 % is added because a path
    whose activations happen to be off is invisible to one probe (MSD-net: 114 px measured,
    120 px by its dilations, 127 px used). A tile whose margins are at
    least this wide gives, in its centre, exactly the untiled result (up to float rounding),
    so tiled inference has no seams.

    Parameters
    ----------
    model : torch.nn.Module
        A network in eval mode; ``divisor`` (default 1) is the size multiple it needs.
    max_size : int
        Largest probe (px).

    Returns
    -------
    int
        Margin in px, a multiple of the model's ``divisor``.
    """
    import torch

    plain = getattr(model, "plain_model", None)  # an inference copy (models.fast): its network's margin
    if plain is not None:
        return receptive_margin(plain, max_size=max_size)
    stated = getattr(model, "receptive_margin", None)
    if isinstance(stated, int) and not isinstance(stated, bool):
        return stated
    cached = getattr(model, "_hrtem_receptive_margin", None)
    if cached is not None:
        return cached
    key = (type(model).__qualname__, str(model))  # the architecture and its configuration
    if key in _MARGINS:
        return _MARGINS[key]
    div = int(getattr(model, "divisor", 1))
    device = next(model.parameters()).device
    from napari_hrtem.models.fast import input_channels

    n_in = input_channels(model)
    generator = torch.Generator().manual_seed(0)
    size = 256
    while True:
        size = int(np.ceil(size / div) * div)
        x = torch.randn((1, n_in, size, size), generator=generator)
        c = size // 2
        x2 = x.clone()
        x2[:, :, c, c] += 10.0
        with torch.no_grad():
            diff = (model(x2.to(device)) - model(x.to(device))).abs().amax(dim=(0, 1)).cpu().numpy()
        rows, cols = np.nonzero(diff > 0)
        reach = int(max(np.abs(rows - c).max(initial=0), np.abs(cols - c).max(initial=0)))
        if reach < c - 1 or size >= max_size:  # the change did not reach the probe's border
            break
        size *= 2
    # A ReLU that happens to be off along the farthest path hides it from one probe: 10 % more.
    margin = int(np.ceil(1.1 * (reach + 1) / div) * div)
    _MARGINS[key] = margin
    try:
        model._hrtem_receptive_margin = margin
    except AttributeError:  # a model that refuses attributes is just not cached
        pass
    return margin


def tile_layout(length: int, tile: int, margin: int, divisor: int = 1) -> list[tuple[int, int]]:
    """Split ``[0, length)`` into the fewest equal cores whose windows fit in ``tile`` px.

    A core ``[s, e)`` is computed from the window ``[s - margin, e + margin)`` (clipped to the
    image), so ``e - s + 2 margin <= tile``. Core starts are multiples of ``divisor`` (a U-Net
    tile then sees the same pooling grid as the whole image).

    Raises
    ------
    ValueError
        If ``tile`` leaves no room for a core between the margins.
    """
    if length <= tile:
        return [(0, length)]
    room = (tile - 2 * margin) // divisor * divisor
    if room < divisor:
        raise ValueError(
            f"a tile of {tile} px leaves no room inside the network's {margin} px margins "
            f"(its receptive field); use tiles of at least {2 * margin + 2 * divisor} px"
        )
    n = int(np.ceil(length / room))
    core = int(np.ceil(length / n / divisor) * divisor)
    return [(s, min(s + core, length)) for s in range(0, length, core)]


def predict_probabilities(
    model,
    images: np.ndarray,
    device=None,
    tile: int = DEFAULT_TILE,
    margin: int | None = None,
    *,
    forward=None,
    progress=None,
) -> np.ndarray:
    """Class probabilities (softmax over classes + background) of a preprocessed focal series.

    Images larger than ``tile`` are processed in tiles: each tile's core is computed from a
    window reaching ``margin`` px further (at least the network's receptive-field half-width,
    :func:`receptive_margin`), so the tiled result equals the untiled one (no seams; a site on
    a tile border is found once) and memory is bounded by the tile size. When a tile runs out
    of memory (``torch.cuda.OutOfMemoryError`` or any "out of memory" RuntimeError), the tile
    size is halved (down to the smallest that keeps the margins), a warning is issued, and the
    run continues with that tile split; finished tiles are kept.

    Parameters
    ----------
    model : torch.nn.Module
        A network in eval mode; its ``divisor`` attribute gives the size multiple it needs.
    images : numpy.ndarray
        ``(N, H, W)`` float32, preprocessed as the network was trained.
    device : torch.device, optional
        Default: the model's device.
    tile : int
        Largest tile edge in px, margins included (:data:`DEFAULT_TILE`).
    margin : int, optional
        Margin in px; default :func:`receptive_margin` (measured once per model).
    forward : callable, optional
        ``forward(model, batch) -> logits`` for a ``(1, N, h, w)`` tensor; default
        ``model(batch)``. (The tests inject a simulated memory ceiling here.)
    progress : callable, optional
        Called as ``progress(done_pixels, total_pixels)`` after each tile.

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)`` float32 probabilities; the last channel is the background.

    Raises
    ------
    ValueError
        If ``images`` is not ``(N, H, W)`` or the tile is too small for the margins.
    RuntimeError
        If a tile runs out of memory even at the smallest tile the margins allow.
    """
    import warnings

    import torch

    from napari_hrtem.models.registry import is_out_of_memory

    images = np.asarray(images, np.float32)
    if images.ndim != 3:
        raise ValueError(f"expected an (N, H, W) series, got shape {images.shape}")
    device = device or _device_of(model)
    forward = forward or (lambda m, batch: m(batch))
    _, h, w = images.shape
    div = int(getattr(model, "divisor", 1))
    stated_margin = margin

    def get_margin():  # measured only when the image is split
        m = receptive_margin(model) if stated_margin is None else stated_margin
        return int(np.ceil(m / div) * div)

    margin = get_margin() if max(h, w) > tile else 0

    def boxes(y0, y1, x0, x1, size):
        return [
            (y0 + a, y0 + b, x0 + c, x0 + d)
            for a, b in tile_layout(y1 - y0, size, margin, div)
            for c, d in tile_layout(x1 - x0, size, margin, div)
        ]

    def window(y0, y1, x0, x1):
        return max(y0 - margin, 0), min(y1 + margin, h), max(x0 - margin, 0), min(x1 + margin, w)

    if max(h, w) > tile:
        tile_layout(max(h, w), tile, margin, div)  # a clear error for a tile too small
    queue = boxes(0, h, 0, w, tile)
    out, done = None, 0
    while queue:
        y0, y1, x0, x1 = queue.pop(0)
        a, b, c, d = window(y0, y1, x0, x1)
        if (b - a > tile or d - c > tile) and (y1 - y0, x1 - x0) != (h, w):
            queue[:0] = boxes(y0, y1, x0, x1, tile)  # a core laid out before the tile shrank
            continue
        patch = images[:, a:b, c:d]
        ph, pw = (-patch.shape[1]) % div, (-patch.shape[2]) % div
        patch = np.pad(patch, ((0, 0), (0, ph), (0, pw)), mode="reflect")
        try:
            with torch.no_grad():
                logits = forward(model, torch.from_numpy(np.ascontiguousarray(patch))[None].to(device))
                logits = logits[0, :, y0 - a : y1 - a, x0 - c : x1 - c].float()
                prob = torch.softmax(logits, dim=0).cpu().numpy()
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            del exc
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            margin = get_margin()
            smallest = 2 * margin + 2 * div
            failed = max(b - a, d - c)
            new_tile = max(failed // 2, smallest) if failed > smallest else failed // 2
            if new_tile < smallest:
                raise RuntimeError(
                    f"out of memory on a {b - a}x{d - c} px tile, and a tile below {smallest} px "
                    f"cannot keep the network's {margin} px margins"
                ) from None
            warnings.warn(
                f"out of memory on a {b - a}x{d - c} px tile: tile size halved to {new_tile} px",
                RuntimeWarning,
                stacklevel=2,
            )
            tile = new_tile
            queue[:0] = boxes(y0, y1, x0, x1, tile)
            continue
        if out is None:
            out = np.zeros((prob.shape[0], h, w), np.float32)
        out[:, y0:y1, x0:x1] = prob
        done += (y1 - y0) * (x1 - x0)
        if progress is not None:
            progress(done, h * w)
    return out


def local_maxima(image: np.ndarray, min_distance: int, threshold: float) -> np.ndarray:
    """Local maxima of an image above ``threshold`` and more than ``min_distance`` px apart.

    The same peaks as ``skimage.feature.peak_local_max(image, min_distance=min_distance,
    threshold_abs=threshold, exclude_border=False)`` (a pixel equal to the maximum of its
    ``(2 min_distance + 1)²`` neighbourhood, then the strongest of peaks closer than
    ``min_distance`` in the max-norm is kept), but the spacing is enforced only among the few
    candidates that have a neighbour (plateaus), not point by point: ~30x faster on a 4096²
    probability map with 10^5 peaks.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` float.
    min_distance : int
        px.
    threshold : float
        Peaks must exceed it.

    Returns
    -------
    numpy.ndarray
        ``(n, 2)`` int64 ``(row, col)``, strongest first.
    """
    from scipy.ndimage import maximum_filter
    from scipy.spatial import cKDTree

    size = 2 * int(min_distance) + 1
    mask = (image == maximum_filter(image, size=size, mode="nearest")) & (image > threshold)
    coords = np.column_stack(np.nonzero(mask))
    order = np.argsort(-image[mask], kind="stable")
    coords = coords[order]
    if len(coords) < 2:
        return coords
    pairs = cKDTree(coords).query_pairs(min_distance - 0.5, p=np.inf, output_type="ndarray")  # d < min_distance
    if len(pairs):
        keep = np.ones(len(coords), bool)
        neighbours: dict[int, list[int]] = {}
        for i, j in np.sort(pairs, axis=1):
            neighbours.setdefault(int(i), []).append(int(j))
        for i in sorted(neighbours):  # strongest first: a kept peak removes its weaker neighbours
            if keep[i]:
                keep[neighbours[i]] = False
        coords = coords[keep]
    return coords


def find_sites(
    probabilities: np.ndarray, sampling: float, *, threshold: float = 0.5, min_distance: float = 1.0, class_names=None
) -> Sites:
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
        Positions in Å; ``extra["p_<class>"]`` is each class' probability at the site (its share
        of the neighbourhood's class probability times the column probability; they sum to the
        column probability, and the site's own class' is its confidence), which
        :func:`napari_hrtem.analysis.consensus.consensus` weighs.
    """
    column = 1.0 - probabilities[-1]
    min_px = max(1, int(round(min_distance / sampling)))
    peaks = local_maxima(column, min_px, threshold)
    h, w = column.shape
    # 3x3 neighbourhoods of all peaks at once (vectorized: ~10^5 sites on a 4096² image).
    dy, dx = np.mgrid[-1:2, -1:2].reshape(2, 1, 9)
    rr, cc = peaks[:, :1] + dy[0], peaks[:, 1:] + dx[0]
    inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    rr, cc = np.clip(rr, 0, h - 1), np.clip(cc, 0, w - 1)
    weights = np.where(inside, column[rr, cc], 0.0).astype(np.float64)
    total = weights.sum(axis=1)
    yx = np.column_stack([(rr * weights).sum(axis=1) / total, (cc * weights).sum(axis=1) / total])
    summed = np.where(inside, probabilities[:-1, rr, cc], 0.0).astype(np.float64).sum(axis=2)  # (C-1, n)
    classes = np.argmax(summed, axis=0) if len(peaks) else np.zeros(0, int)
    # each class' share of the neighbourhood's class probability, times the column probability
    p_class = summed / np.maximum(summed.sum(axis=0), 1e-12) * column[peaks[:, 0], peaks[:, 1]]
    confidence = np.take_along_axis(p_class, classes[None], axis=0)[0] if len(peaks) else np.zeros(0)
    kwargs = {"class_names": tuple(class_names)} if class_names else {}
    sites = Sites(yx.reshape(-1, 2) * sampling, np.asarray(classes, int), np.asarray(confidence, float), **kwargs)
    sites.extra = {f"p_{name}": p_class[c] for c, name in enumerate(sites.class_names[: len(p_class)])}
    return sites


def preprocessing_key(card: ModelCard) -> tuple:
    """What a network's preprocessing depends on (networks sharing it share the preprocessed series)."""

    return (
        float(card.sampling),
        bool(card.support_filter),
        float(card.support_lattice_constant),
        float(card.normalization_distance),
    )


def prepare_series(card: ModelCard, images: np.ndarray, sampling: float) -> np.ndarray:
    """A raw focal series preprocessed as a network's model card says (what the network sees).

    Resampling to the card's ``sampling``, the support Fourier filter (``support_filter``,
    ``support_lattice_constant``), local normalization (``normalization_distance``).

    Parameters
    ----------
    card : ModelCard
        Model card.
    images : numpy.ndarray
        ``(N, H, W)`` raw intensities.
    sampling : float
        Å/px of ``images``.

    Returns
    -------
    numpy.ndarray
        ``(N, H', W')`` float32 at the card's sampling.
    """
    from napari_hrtem.analysis import filters

    net_sampling, remove_support, lattice, distance = preprocessing_key(card)
    work = filters.resample(images, sampling, net_sampling)
    if remove_support:
        work = filters.support_filter(work, net_sampling, lattice_constant=lattice, full_mask=False).images
    return filters.local_normalize(work, net_sampling, distance)


#: Column probability threshold of a network whose card gives none.
DEFAULT_THRESHOLD = 0.5


def network_threshold(card: ModelCard, threshold: float | None = None) -> float:
    """The column probability threshold to use: ``threshold`` if given, else the card's
    ``"threshold"`` (chosen on its validation set by :func:`napari_hrtem.training.trainer.calibrate_threshold`),
    else :data:`DEFAULT_THRESHOLD`.

    Raises
    ------
    ValueError
        If the threshold is not in (0, 1).
    """
    value = float(card.column_threshold if threshold is None else threshold)
    if not 0 < value < 1:
        raise ValueError(f"column probability threshold must be between 0 and 1, got {value}")
    return value


def predict_sites(
    network,
    images: np.ndarray,
    sampling: float,
    *,
    model=None,
    device=None,
    threshold: float | None = None,
    progress: Callable[[str], None] | None = None,
    tile: int = DEFAULT_TILE,
    prepared: np.ndarray | None = None,
    precision: str = "auto",
    test_time_augmentation: bool = False,
) -> tuple[Sites, np.ndarray]:
    """Run one network on a raw focal series with the preprocessing of its model card.

    The network runs as its inference-only copy (:func:`napari_hrtem.models.fast.inference_model`:
    batch norm folded, the MSD-net as matrix products, bfloat16 where the device computes it
    natively); :func:`predict_probabilities` with the plain model is the reference path.

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
        The already loaded model (saves loading it again), plain or already an inference copy.
    threshold : float, optional
        Column probability threshold (see :func:`find_sites`); default: the card's
        (:func:`network_threshold`).
    tile : int
        Largest tile edge in px (see :func:`predict_probabilities`).
    prepared : numpy.ndarray, optional
        ``images`` already preprocessed by :func:`prepare_series` for this card (networks with
        the same :func:`preprocessing_key` share it; :func:`predict_all` does so).
    precision : str
        ``"auto"`` (bfloat16 on a CPU or GPU with native bfloat16, else float32), ``"float32"``
        (the plain model's probabilities to ~1e-5) or ``"bfloat16"`` (sites within
        :data:`napari_hrtem.models.fast.BF16_TOLERANCE` of float32's); see
        :func:`napari_hrtem.models.fast.choose_precision`.
    test_time_augmentation : bool
        Average the logits over the 8 symmetries of the pixel grid
        (:func:`napari_hrtem.models.fast.symmetrized`; 8 passes).

    Returns
    -------
    sites : Sites
        Positions in Å in the input's frame; ``meta["precision"]`` is the precision used,
        ``meta["test_time_augmentation"]`` whether the 8 symmetries were averaged.
    probabilities : numpy.ndarray
        ``(C, H', W')`` at the network's sampling.

    Raises
    ------
    ValueError
        If the series length does not match the card, or the images are not finite, constant,
        too small or at an implausible sampling (:func:`napari_hrtem.io.validation.check_focal_series`),
        or the precision is unknown.
    """
    from napari_hrtem.io.validation import check_focal_series
    from napari_hrtem.models.fast import choose_precision, inference_model, symmetrized

    card = network.card
    threshold = network_threshold(card, threshold)
    choose_precision(precision, "cpu", False)  # a clear error for an unknown precision, before any work
    images = check_focal_series(images, sampling, card.n_images)  # clear errors for bad input
    net_sampling = float(card.sampling)
    work = prepare_series(card, images, sampling) if prepared is None else prepared
    model = inference_model(model if model is not None else network.load(device), precision)
    if test_time_augmentation:
        model = symmetrized(model)
    probabilities = predict_probabilities(model, work, tile=tile)
    sites = find_sites(probabilities, net_sampling, threshold=threshold, class_names=card.classes)
    sites.meta = dict(
        network=network.name,
        sha256=card.sha256,
        threshold=threshold,
        precision=model.precision,
        test_time_augmentation=bool(test_time_augmentation),
    )
    return sites, probabilities


class ProbabilityMaps:
    """Each network's class probability maps, kept until the consensus sites are known.

    :func:`predict_all` hands them over so that every network's probabilities can be read at
    the consensus sites without a second inference pass. A map is stored as float16 (half the
    memory of the float32 the network gives); a map larger than ``spill_bytes`` goes to a
    temporary file (a ``numpy.memmap``), so a 4096² series never holds more than the running
    network's map in memory. :meth:`close` (or garbage collection) deletes the files.

    Parameters
    ----------
    spill_bytes : int
        Largest map (float16 bytes) kept in memory.
    """

    def __init__(self, spill_bytes: int = 64 * 2**20):
        import weakref

        self.spill_bytes = int(spill_bytes)
        self.maps: dict[str, np.ndarray] = {}
        self.sampling: dict[str, float] = {}
        self.class_names: tuple[str, ...] = ()
        self._folder = None
        self._finalizer = weakref.finalize(self, ProbabilityMaps._remove, self.__dict__)

    @staticmethod
    def _remove(state: dict) -> None:
        state["maps"] = {}
        folder = state.get("_folder")
        if folder is not None:
            folder.cleanup()
            state["_folder"] = None

    def add(self, name: str, probabilities: np.ndarray, sampling: float, class_names=()) -> None:
        """Keep one network's ``(C, H', W')`` map (classes, background last) at ``sampling`` Å/px."""
        import tempfile

        probabilities = np.asarray(probabilities)
        if probabilities.size * 2 > self.spill_bytes:
            if self._folder is None:
                self._folder = tempfile.TemporaryDirectory(prefix="napari-hrtem-probabilities-")
            stored = np.lib.format.open_memmap(
                f"{self._folder.name}/{len(self.maps)}.npy", mode="w+", dtype=np.float16, shape=probabilities.shape
            )
            stored[:] = probabilities
            stored.flush()
        else:
            stored = probabilities.astype(np.float16)
        self.maps[name] = stored
        self.sampling[name] = float(sampling)
        self.class_names = tuple(class_names) or self.class_names

    def sample(self, name: str, yx: np.ndarray) -> np.ndarray:
        """``(C, n)`` probabilities of network ``name`` at ``yx`` (Å, origin at the centre of pixel
        (0, 0) of the series the network saw), bilinear between the map's pixels (clamped at the
        border)."""
        prob = self.maps[name]
        pix = np.asarray(yx, float).reshape(-1, 2) / self.sampling[name]
        h, w = prob.shape[1:]
        y = np.clip(pix[:, 0], 0, h - 1)
        x = np.clip(pix[:, 1], 0, w - 1)
        y0 = np.minimum(np.floor(y).astype(int), max(h - 2, 0))
        x0 = np.minimum(np.floor(x).astype(int), max(w - 2, 0))
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        fy, fx = y - y0, x - x0
        out = np.zeros((prob.shape[0], len(pix)))
        for rows, cols, weight in (
            (y0, x0, (1 - fy) * (1 - fx)),
            (y0, x1, (1 - fy) * fx),
            (y1, x0, fy * (1 - fx)),
            (y1, x1, fy * fx),
        ):
            out += np.asarray(prob[:, rows, cols], float) * weight
        return out

    def close(self) -> None:
        """Forget the maps and delete their temporary files."""
        self._finalizer()


def check_same_classes(networks, hint: str = "") -> None:
    """Raise a ValueError naming each network's classes unless they all label the same classes
    (a consensus compares classes site by site)."""
    if len({tuple(net.card.classes) for net in networks}) > 1:
        listing = "; ".join(f"{net.name}: {', '.join(net.card.classes)}" for net in networks)
        raise ValueError(
            f"the networks label different classes ({listing}); a consensus needs the same classes"
            + (f": {hint}" if hint else "")
        )


def predict_all(
    networks,
    images: np.ndarray,
    sampling: float,
    *,
    k: int | None = None,
    radius: float = 0.5,
    threshold: float | None = None,
    device=None,
    tile: int = DEFAULT_TILE,
    keep_probabilities: bool = False,
    precision: str = "auto",
    test_time_augmentation: bool = False,
    rule: str = "auto",
):
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
        Consensus settings (:func:`napari_hrtem.analysis.consensus.consensus`): least votes (default a
        majority) and agreement radius in Å.
    threshold : float, optional
        Column probability threshold of every network; default: each network's own
        (:func:`network_threshold`).
    tile : int
        Largest tile edge in px (see :func:`predict_probabilities`).
    keep_probabilities : bool
        Hand over every network's probability maps (:class:`ProbabilityMaps`, float16; large
        maps in a temporary file) in the last event, to be read at the consensus sites.
    precision : str
        ``"auto"``, ``"float32"`` or ``"bfloat16"`` (see :func:`predict_sites`).
    test_time_augmentation : bool
        Every network averaged over the 8 symmetries of the pixel grid (see :func:`predict_sites`).
    rule : str
        Consensus rule: ``"auto"`` (the learned rule where a shipped combiner fits the networks,
        else the sum rule; :func:`napari_hrtem.analysis.combiner.choose_rule`), ``"sum"``,
        ``"same-class"`` or ``"learned"``.

    The preprocessing is done once for all networks that share it (:func:`preprocessing_key`).

    Raises
    ------
    ValueError
        Before any work, if no network is given, the networks label different classes, the
        precision is unknown or the rule does not fit the networks.

    Yields
    ------
    dict
        ``{"done": i, "total": n, "network": name}`` after each network; the last event is
        ``{"results": {name: Sites}, "consensus": Sites, "seconds": {name: s}}``, with
        ``"probabilities"`` (:class:`ProbabilityMaps`) when ``keep_probabilities``.
    """
    import time

    from napari_hrtem.analysis.combiner import choose_rule
    from napari_hrtem.analysis.consensus import consensus
    from napari_hrtem.models.fast import choose_precision

    networks = list(networks)
    if not networks:
        raise ValueError("choose at least one network")
    check_same_classes(networks)  # before any work is done
    choose_precision(precision, "cpu", False)  # an unknown precision, too
    rule, combiner = choose_rule(networks, rule, threshold)
    results, seconds, prepared = {}, {}, {}
    maps = ProbabilityMaps() if keep_probabilities else None
    for i, net in enumerate(networks):
        t0 = time.perf_counter()
        key = preprocessing_key(net.card)
        if key not in prepared:
            prepared = {key: prepare_series(net.card, np.asarray(images, np.float32), sampling)}  # keep one
        results[net.name], probabilities = predict_sites(
            net,
            images,
            sampling,
            device=device,
            threshold=threshold,
            tile=tile,
            prepared=prepared[key],
            precision=precision,
            test_time_augmentation=test_time_augmentation,
        )
        if maps is not None:
            maps.add(net.name, probabilities, float(net.card.sampling), net.card.classes)
        del probabilities  # only the running network's float32 map is held
        seconds[net.name] = time.perf_counter() - t0
        yield dict(done=i + 1, total=len(networks), network=net.name)
    agreed = consensus(results, k=k, radius=radius, rule=rule, combiner=combiner)
    last = dict(results=results, consensus=agreed, seconds=seconds)
    if maps is not None:
        last["probabilities"] = maps
    yield last


def site_agreement(reference: Sites, other: Sites, radius: float = 0.1) -> dict:
    """How far two site lists of the same series agree (e.g. float32 against bfloat16 inference).

    Sites are matched one to one within ``radius`` Å
    (:func:`napari_hrtem.analysis.metrics.match_sites`).

    Parameters
    ----------
    reference, other : Sites
        Positions in Å.
    radius : float
        Largest distance of a matched pair, Å.

    Returns
    -------
    dict
        ``n_reference``, ``n_other``, ``matched`` (pairs), ``f1`` (``2 matched / (n_reference +
        n_other)``, 1 for two empty lists), ``unmatched`` (fraction of the sites of both lists
        without a partner), ``same_class`` (fraction of the matched pairs of the same class, 1
        without pairs) and ``max_shift`` (largest distance of a matched pair, Å).
    """
    from napari_hrtem.analysis.metrics import match_sites

    ia, ib = match_sites(reference.yx, other.yx, radius)
    n_a, n_b = len(reference), len(other)
    total = n_a + n_b
    shift = np.hypot(*(np.asarray(reference.yx)[ia] - np.asarray(other.yx)[ib]).T) if len(ia) else np.zeros(0)
    return dict(
        n_reference=n_a,
        n_other=n_b,
        matched=len(ia),
        f1=2 * len(ia) / total if total else 1.0,
        unmatched=(total - 2 * len(ia)) / total if total else 0.0,
        same_class=float(np.mean(np.asarray(reference.classes)[ia] == np.asarray(other.classes)[ib]))
        if len(ia)
        else 1.0,
        max_shift=float(shift.max(initial=0.0)),
    )


def agreement_within(reference: Sites, other: Sites, tolerance: dict | None = None) -> tuple[bool, dict]:
    """Whether two site lists of the same series agree within a tolerance (bfloat16 against float32).

    Parameters
    ----------
    reference, other : Sites
        Positions in Å (e.g. the float32 and the bfloat16 sites of one network).
    tolerance : dict, optional
        ``radius`` (Å), ``f1``, ``same_class``, ``max_shift`` (Å), ``fine_radius`` (Å),
        ``f1_fine``; default :data:`napari_hrtem.models.fast.BF16_TOLERANCE`.

    Returns
    -------
    ok : bool
        F1 within ``radius`` >= ``f1``, same class >= ``same_class``, largest shift <=
        ``max_shift`` and F1 within ``fine_radius`` >= ``f1_fine``.
    figures : dict
        :func:`site_agreement` within ``radius``, plus ``f1_fine`` (the F1 within ``fine_radius``).
    """
    from napari_hrtem.models.fast import BF16_TOLERANCE

    tol = {**BF16_TOLERANCE, **(tolerance or {})}
    figures = site_agreement(reference, other, tol["radius"])
    figures["f1_fine"] = site_agreement(reference, other, tol["fine_radius"])["f1"]
    ok = (
        figures["f1"] >= tol["f1"]
        and figures["same_class"] >= tol["same_class"]
        and figures["max_shift"] <= tol["max_shift"]
        and figures["f1_fine"] >= tol["f1_fine"]
    )
    return ok, figures
