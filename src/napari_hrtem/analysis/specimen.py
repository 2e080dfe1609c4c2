"""Where a focal series shows a specimen: a mask of the crystalline area, from the images alone.

Networks trained on simulated crystals call columns wherever the image has contrast at column
spacings, also in the vacuum beside a crystal edge (only noise there) or on amorphous material
(no lattice). :func:`specimen_mask` keeps the area where (1) the power in the band of
atomic-column spacings (1.5-4 Å) stands well above the noise (the power beyond the information
limit is the noise reference) and (2) that power sits in Bragg spots rather than being spread
over all directions (a lattice, not noise or amorphous material). Thresholds were measured on
simulated MoS2 (bare, on graphene, flakes in vacuum), on white noise and on real 300 kV frames
with a vacuum region (img07-09 of the shared real data); see :func:`specimen_mask`.

References
----------
.. [1] P. D. Welch, "The use of fast Fourier transform for the estimation of power spectra",
   IEEE Trans. Audio Electroacoust. 15, 70-73 (1967) (windowed periodograms).
.. [2] R. A. Fisher, "Tests of significance in harmonic analysis", Proc. R. Soc. Lond. A 125,
   54-59 (1929) (the largest periodogram ordinate against the mean as a test for periodicity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

#: Band of atomic-column spacings, Å (d = 1/q).
BAND = (1.5, 4.0)
#: Window edge of the signal-to-noise map, Å (small: it places the specimen's edge).
SIGNAL_WINDOW = 8.0
#: Signal-to-noise threshold: band power over the noise reference's (measured; see the module).
SIGNAL_THRESHOLD = 15.0
#: Window edge of the lattice map, Å (large: resolves the Bragg spots of large cells).
LATTICE_WINDOW = 32.0
#: Fourier components averaged for the lattice peak (three Bragg spots of a hexagonal lattice per half plane).
TOP = 3
#: Lattice threshold = LATTICE_MARGIN x the noise reference (99.9th percentile of the peak on white noise).
LATTICE_MARGIN = 1.5
#: Noise reference band, as fractions of the Nyquist frequency (beyond the information limit).
NOISE_BAND = (0.75, 0.9)


@dataclass
class SpecimenMask:
    """Where the images show a specimen with a periodic lattice.

    Attributes
    ----------
    mask : numpy.ndarray
        ``(H, W)`` bool, True on the specimen, at the images' sampling.
    sampling : float
        Å/px.
    origin : (float, float)
        ``(y, x)`` in Å of the centre of mask pixel (0, 0) in the frame of the sites (non-zero
        for a drift-aligned, cropped series: its crop origin in the reference frame).
    signal, lattice : numpy.ndarray
        The two maps on their window grids (see :func:`specimen_mask`): band power over the
        noise reference, and the lattice peak ratio.
    signal_threshold, lattice_threshold : float
        Their thresholds.
    noise_level : float
        The lattice map's noise reference (99.9th percentile of the peak ratio on white noise).
    params : dict
        ``band``, ``signal_window``, ``lattice_window`` (Å), ``top``, ``lattice_margin``.
    """

    mask: np.ndarray
    sampling: float
    origin: tuple[float, float] = (0.0, 0.0)
    signal: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    lattice: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    signal_threshold: float = SIGNAL_THRESHOLD
    lattice_threshold: float = 0.0
    noise_level: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Fraction of the field on the specimen."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def contains(self, yx: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: which positions ``(y, x)`` (Å, in the sites' frame) lie on the specimen.

        A position outside the image is outside the specimen.
        """
        yx = np.asarray(yx, float).reshape(-1, 2)
        px = np.rint((yx - np.asarray(self.origin, float)) / self.sampling).astype(np.int64)
        h, w = self.mask.shape
        inside = (px[:, 0] >= 0) & (px[:, 0] < h) & (px[:, 1] >= 0) & (px[:, 1] < w)
        out = np.zeros(len(yx), bool)
        out[inside] = self.mask[px[inside, 0], px[inside, 1]]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: ``fraction`` of the field, thresholds, noise reference, ``sampling``,
        ``origin`` and the parameters."""
        return dict(
            fraction=round(self.fraction, 4),
            signal_threshold=float(self.signal_threshold),
            lattice_threshold=round(float(self.lattice_threshold), 3),
            noise_level=round(float(self.noise_level), 3),
            sampling=self.sampling,
            origin=[float(v) for v in self.origin],
            **self.params,
        )


def _window_px(sampling: float, window: float, shape: tuple[int, ...]) -> int:
    n = int(round(window / sampling))
    n += n % 2
    return max(8, min(n, 2 * (min(shape[-2:]) // 2)))


def _bins(n: int, sampling: float, qmin: float, qmax: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices into a flattened ``rfft2`` of an ``n x n`` window with ``qmin <= |q| <= qmax`` (1/Å)
    and their radius (in frequency bins)."""
    qy = np.fft.fftfreq(n, d=sampling)[:, None]
    qx = np.fft.rfftfreq(n, d=sampling)[None, :]
    q = np.hypot(qy, qx).ravel()
    inband = np.flatnonzero((q >= qmin) & (q <= qmax))
    return inband, np.rint(q[inband] * n * sampling).astype(int)


def _window_power(images: np.ndarray, n: int, step: int, index: np.ndarray) -> np.ndarray:
    """``(gy, gx, len(index))`` Hann-windowed periodograms at ``index``, summed over the frames."""
    from numpy.lib.stride_tricks import sliding_window_view

    hann = np.outer(np.hanning(n), np.hanning(n)).astype(np.float32)
    total: np.ndarray | None = None
    for image in images:
        patches = sliding_window_view(image.astype(np.float32), (n, n))[::step, ::step]
        gy, gx = patches.shape[:2]
        out = np.empty((gy, gx, len(index)), np.float32)
        for r in range(gy):  # one row of windows at a time: bounded memory
            p = patches[r] - patches[r].mean(axis=(-2, -1), keepdims=True)
            f = np.fft.rfft2(p * hann)
            out[r] = (np.abs(f) ** 2).reshape(gx, -1)[:, index]
        total = out if total is None else total + out
    assert total is not None
    return total


def _signal_map(images: np.ndarray, sampling: float, n: int, step: int, band: tuple[float, float]) -> np.ndarray:
    """Mean power in the band over mean power in the noise reference band, per window."""
    nyquist = 0.5 / sampling
    index, _ = _bins(n, sampling, 1.0 / max(band), 1.0 / min(band))
    noise, _ = _bins(n, sampling, NOISE_BAND[0] * nyquist, NOISE_BAND[1] * nyquist)
    power = _window_power(images, n, step, np.concatenate([index, noise]))
    inband = power[..., : len(index)].mean(axis=-1)
    return (inband / np.maximum(power[..., len(index) :].mean(axis=-1), 1e-30)).astype(np.float32)


def _lattice_map(images: np.ndarray, sampling: float, n: int, step: int, band: tuple[float, float], top: int):
    """Per window: mean of the ``top`` strongest band components over their rings' mean power."""
    index, radius = _bins(n, sampling, 1.0 / max(band), 1.0 / min(band))
    power = _window_power(images, n, step, index)
    gy, gx = power.shape[:2]
    flat = power.reshape(gy * gx, -1).astype(np.float64)
    rings, which = np.unique(radius, return_inverse=True)
    onehot = np.zeros((len(index), len(rings)))
    onehot[np.arange(len(index)), which] = 1.0
    ring = flat @ onehot / onehot.sum(axis=0)  # each ring's mean power, per window
    white = flat / np.maximum(ring[:, which], 1e-30)
    k = min(top, white.shape[1])
    peak = np.partition(white, white.shape[1] - k, axis=1)[:, -k:].mean(axis=1)
    return peak.reshape(gy, gx).astype(np.float32)


@lru_cache(maxsize=16)
def noise_level(
    n_frames: int, sampling: float, *, window: float = LATTICE_WINDOW, band: tuple[float, float] = BAND, top: int = TOP
) -> float:
    """99.9th percentile of the lattice peak ratio on white Gaussian noise (fixed seed): the noise
    reference of the lattice threshold.

    Parameters
    ----------
    n_frames : int
        Frames whose window power is summed (the statistic depends on it).
    sampling : float
        Å/px.
    window, band, top
        As ``lattice_window``, ``band`` and ``top`` of :func:`specimen_mask`.
    """
    n = _window_px(sampling, window, (4096, 4096))
    step = n // 2
    noise = np.random.default_rng(0).standard_normal((n_frames, 20 * step + n, 20 * step + n)).astype(np.float32)
    return float(np.percentile(_lattice_map(noise, sampling, n, step, band, top), 99.9))


def _to_pixels(grid: np.ndarray, n: int, step: int, shape: tuple[int, int]) -> np.ndarray:
    """A window map (window ``[i, j]`` centred at pixel ``(n - 1) / 2 + (i, j) * step``) at every pixel."""
    from scipy import ndimage

    gy, gx = grid.shape
    rows = np.clip((np.arange(shape[0]) - (n - 1) / 2) / step, 0, gy - 1)
    cols = np.clip((np.arange(shape[1]) - (n - 1) / 2) / step, 0, gx - 1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(np.log(np.maximum(grid, 1e-12)), [rr, cc], order=1, mode="nearest")


def specimen_mask(
    images: np.ndarray,
    sampling: float,
    *,
    band: tuple[float, float] = BAND,
    signal_window: float = SIGNAL_WINDOW,
    signal_threshold: float = SIGNAL_THRESHOLD,
    lattice_window: float = LATTICE_WINDOW,
    lattice_margin: float = LATTICE_MARGIN,
    top: int = TOP,
    origin: tuple[float, float] = (0.0, 0.0),
) -> SpecimenMask:
    """The area of a focal series that shows a specimen with a periodic lattice.

    Two maps from Hann-windowed periodograms summed over the frames [1]_:

    - *signal* (window ``signal_window``, 8 Å): the mean power in the band of atomic-column
      spacings (``band``, 1.5-4 Å) over the mean power at 0.75-0.9 of the Nyquist frequency,
      beyond the information limit, where there is only noise. Vacuum (only noise) gives the
      detector's noise colour (about 2 for the simulations, 7-11 on the 300 kV frames
      img07-09); a specimen tens to thousands (simulated MoS2 66-370, graphene alone about 30,
      the crystal of img07-09 about 1000). Threshold ``signal_threshold`` (15).
    - *lattice* (window ``lattice_window``, 32 Å): the mean of the ``top`` (3) strongest band
      components, each over the mean power of its ring of equal ``|q|`` [2]_: noise and
      amorphous material spread their power evenly over directions (about 3; 99.9th
      percentile on white noise about 4, the noise reference), a lattice puts it in Bragg spots
      (8-20 on the simulated MoS2 and on img07-09). Threshold ``lattice_margin`` (1.5) x the
      noise reference.

    The specimen is where both exceed their thresholds (the maps interpolated to every pixel),
    opened by a 1 Å disk, without islands smaller than one signal window and with inner holes
    smaller than four signal windows filled.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` focal series or one ``(H, W)`` image.
    sampling : float
        Å/px.
    band : (float, float)
        Range of lattice spacings, Å.
    signal_window, lattice_window : float
        Window edges of the two maps, Å (at most the image).
    signal_threshold : float
        Least band-to-noise power ratio of a specimen.
    lattice_margin : float
        Lattice threshold as a multiple of the noise reference (:func:`noise_level`).
    top : int
        Fourier components averaged for the lattice peak.
    origin : (float, float)
        ``(y, x)`` in Å of pixel (0, 0) in the frame of the sites (recorded on the result).

    Returns
    -------
    SpecimenMask
        The bool ``(H, W)`` mask with both maps, their thresholds and the noise reference.

    Raises
    ------
    ValueError
        For a wrong shape, non-finite pixels or a non-positive sampling.

    References
    ----------
    .. [1] P. D. Welch, "The use of fast Fourier transform for the estimation of power
       spectra", IEEE Trans. Audio Electroacoust. 15, 70-73 (1967).
    .. [2] R. A. Fisher, "Tests of significance in harmonic analysis", Proc. R. Soc. Lond. A
       125, 54-59 (1929).
    """
    from scipy import ndimage
    from skimage.morphology import disk

    series = np.asarray(images, np.float32)
    if series.ndim == 2:
        series = series[None]
    if series.ndim != 3 or min(series.shape[1:]) < 8:
        raise ValueError(f"expected (N, H, W) or (H, W) images of at least 8 x 8 px, got shape {np.shape(images)}")
    if not np.isfinite(series).all():
        raise ValueError("the images hold NaN or Inf pixels")
    if not sampling > 0:
        raise ValueError(f"sampling must be positive, got {sampling}")
    shape = (int(series.shape[1]), int(series.shape[2]))
    ns = _window_px(sampling, signal_window, shape)
    nl = _window_px(sampling, lattice_window, shape)
    reference = noise_level(len(series), float(sampling), window=nl * sampling, band=tuple(band), top=top)
    limit = lattice_margin * reference
    params = dict(
        band=list(band),
        signal_window=signal_window,
        lattice_window=lattice_window,
        top=top,
        lattice_margin=lattice_margin,
    )
    signal = _signal_map(series, sampling, ns, max(1, ns // 4), band)
    lattice = _lattice_map(series, sampling, nl, max(1, nl // 4), band, top)
    mask = (_to_pixels(signal, ns, max(1, ns // 4), shape) > np.log(signal_threshold)) & (
        _to_pixels(lattice, nl, max(1, nl // 4), shape) > np.log(limit)
    )
    mask = ndimage.binary_opening(mask, structure=disk(max(1, int(round(1.0 / sampling)))))
    labels, count = ndimage.label(mask)  # islands smaller than one signal window: noise
    if count:
        sizes = np.bincount(labels.ravel())
        mask = (sizes >= ns * ns)[labels] & mask
    holes, count = ndimage.label(~mask)  # holes inside, smaller than (2 signal windows)²: filled
    if count:
        sizes = np.bincount(holes.ravel())
        small = sizes < 4 * ns * ns
        border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        small[border] = False
        small[0] = False
        mask = mask | small[holes]
    return SpecimenMask(
        mask.astype(bool),
        float(sampling),
        (float(origin[0]), float(origin[1])),
        signal,
        lattice,
        float(signal_threshold),
        float(limit),
        reference,
        params,
    )
