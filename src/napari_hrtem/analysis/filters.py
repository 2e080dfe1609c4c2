"""Preprocessing: support-lattice Fourier filter, local normalization, resampling.

All functions take images as ``(H, W)`` or ``(N, H, W)`` float arrays in ``(y, x)`` order and the
sampling in Å/px, and return float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

GRAPHENE_A = 2.46  # Å
#: Relative tolerance of a support's ring radii and fitted lattice constant.
RADIAL_TOLERANCE = 0.03
#: Least significance (robust σ) of a domain's weakest first-order spot and of its second-order
#: spots together (see ``detect_support_domains``).
MIN_SIGNIFICANCE = 10.0
MIN_CONFIRMATION = 10.0


@dataclass(frozen=True)
class SupportDomain:
    """One domain (grain or rotated layer) of a hexagonal support lattice found in a diffractogram.

    Attributes
    ----------
    angle : float
        Direction of its first-order spots in degrees, in [0, 60) (a lattice whose real-space
        vector is at θ has its first-order spots at θ + 30° mod 60°).
    lattice_constant : float
        Lattice constant a in Å fitted to the first- and second-order spot positions.
    significance : float
        The weakest of its three independent spots (the others are their Friedel mates) on the
        ring it was detected on (first or second order) above that ring's background, in robust
        standard deviations (σ) of the ring.
    combined_significance : float
        The three spots' significances on that ring summed and divided by √3, σ (one strong
        reflection of another crystal can raise it; it is not a test).
    confirmation : float
        The confirming ring's three spots, summed and divided by √3, σ.
    q1 : float
        Fitted first-order radius |g1| = 2 / (√3 a) in 1/Å.
    order : str
        Which ring the domain was detected on and which confirmed it.
    reason : str
        Empty for an accepted domain; why a candidate was rejected otherwise.
    """

    angle: float
    lattice_constant: float
    significance: float
    combined_significance: float
    confirmation: float
    q1: float
    order: str = ""
    reason: str = ""

    @property
    def angle_rad(self) -> float:
        """:attr:`angle` in radians."""
        return float(np.radians(self.angle))

    def describe(self) -> str:
        """``12.3° (a = 2.46 Å, 9.1σ)``."""
        return f"{self.angle:.1f}° (a = {self.lattice_constant:.2f} Å, {self.significance:.1f}σ)"


@dataclass
class SupportFilterResult:
    """What :func:`support_filter` did.

    Attributes
    ----------
    images : numpy.ndarray
        The filtered images (float32, the input's shape); when ``filtered`` is False the input
        unchanged (bit-identical as float32, a copy).
    domains : tuple of SupportDomain
        The support domains found and filtered, strongest first (empty: none found).
    filtered : bool
        Whether the images were filtered.
    message : str
        One line for a status bar or log.
    rejected : tuple of SupportDomain
        Candidates that failed a test (strongest first, ``reason`` says which), for diagnostics.
    mask : numpy.ndarray or None
        ``(H, W)`` float32 mask in FFT order (None when not filtered or ``full_mask=False``).
    mask_half : numpy.ndarray or None
        The mask on the real-FFT half plane ``(H, W // 2 + 1)`` (None when not filtered).
    """

    images: np.ndarray
    domains: tuple[SupportDomain, ...]
    filtered: bool
    message: str
    rejected: tuple[SupportDomain, ...] = ()
    mask: np.ndarray | None = field(default=None, repr=False)
    mask_half: np.ndarray | None = field(default=None, repr=False)

    @property
    def angles(self) -> list[float]:
        """Spot directions of the domains in radians."""
        return [d.angle_rad for d in self.domains]


def _as_series(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"expected an (H, W) image or an (N, H, W) focal series, got shape {images.shape}")
    if not np.all(np.isfinite(images)):
        raise ValueError("the image holds NaN or Inf pixels")
    return images


@lru_cache(maxsize=16)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """``(n, n)`` float64 matrix of ``scipy.ndimage.gaussian_filter1d(x, sigma, mode="reflect")`` on
    length-``n`` signals (column ``j``: the filter's response to a unit impulse at ``j``), read-only."""
    from scipy.ndimage import gaussian_filter1d

    matrix = gaussian_filter1d(np.eye(n), sigma, axis=0, mode="reflect")
    matrix.flags.writeable = False
    return matrix


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each image of an ``(N, H, W)`` stack with mirrored borders.

    Same result as ``scipy.ndimage.gaussian_filter(images, (0, sigma, sigma), mode="reflect")``
    up to its 4-sigma truncation (differences ~1e-4 of the data's scale). For wide kernels
    (``sigma`` > 4 px) on images of at most 512 px a side, the filter is applied as two matrix
    products, ``B_H @ image @ B_W.T``, where ``B_n`` is scipy's own 1-D filter of the ``n x n``
    identity (its exact result, to rounding; 20x faster than the direct 8-sigma-wide kernel at
    128 px and sigma 60 px, the local normalization of a training series); on larger images the
    convolution is done by FFT on a reflect-padded copy, faster than the direct kernel (1.7x at
    1295x1295 px, sigma 53 px), one image at a time (memory: a few padded copies of one image).

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` float array.
    sigma : float
        Standard deviation in px.

    Returns
    -------
    numpy.ndarray
        ``(N, H, W)``, float32 for a float32 input, else float64.
    """
    from scipy import fft
    from scipy.ndimage import fourier_gaussian, gaussian_filter

    images = np.asarray(images)
    if images.dtype != np.float32:
        images = images.astype(np.float64)
    h, w = images.shape[1:]
    if sigma <= 4:  # the direct kernel is as fast here
        return gaussian_filter(images, (0, sigma, sigma), mode="reflect")
    if max(h, w) <= 512:
        by, bx = _blur_matrix(h, float(sigma)), _blur_matrix(w, float(sigma))
        by, bx = by.astype(images.dtype, copy=False), bx.astype(images.dtype, copy=False)
        return np.matmul(np.matmul(by, images), bx.T)
    pad = int(np.ceil(4 * sigma))
    # Pad to FFT-friendly sizes; numpy's "symmetric" repeats the edge pixel like scipy's "reflect".
    fh, fw = fft.next_fast_len(h + 2 * pad, real=True), fft.next_fast_len(w + 2 * pad, real=True)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        padded = np.pad(image, ((pad, fh - h - pad), (pad, fw - w - pad)), mode="symmetric")
        spectrum = fourier_gaussian(fft.rfft2(padded, workers=-1), sigma, n=fw, axis=-1)
        out[i] = fft.irfft2(spectrum, s=(fh, fw), workers=-1)[pad : pad + h, pad : pad + w]
    return out


def local_normalize(images: np.ndarray, sampling: float, distance: float = 12.0) -> np.ndarray:
    """Local standardization of a focal series (thesis [1]_ eq. 3.3.1).

    ``Î_c = (I_c - <G * I>) / <sqrt(G * (I_c - G * I_c)²)>`` where ``G`` is a Gaussian of standard
    deviation ``distance / sampling`` px and ``<.>`` is the mean over the N images, so all images
    of a series share one local mean and scale. The denominator uses the local mean-subtracted
    intensity (local standard deviation, as in Madsen et al. [2]_, the method the thesis follows)
    rather than the raw intensity, so that the result does not depend on the vacuum level.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` or ``(H, W)`` intensities.
    sampling : float
        Å/px.
    distance : float
        Normalization distance in Å (thesis Table 1: 12 Å).

    Returns
    -------
    numpy.ndarray
        Same shape as the input, float32.

    Raises
    ------
    ValueError
        For a wrong shape, NaN/Inf pixels, or a non-positive sampling or distance.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), eq. 3.3.1, Table 1.
    .. [2] J. Madsen, P. Liu, J. Kling, J. B. Wagner, T. W. Hansen, O. Winther, J. Schiøtz, "A deep
       learning approach to identify local structures in atomic-resolution transmission electron
       microscopy images", Adv. Theory Simul. 1, 1800037 (2018).
    """
    squeeze = np.asarray(images).ndim == 2
    series = _as_series(images)
    if not (sampling > 0 and distance > 0):
        raise ValueError(f"sampling and distance must be positive, got {sampling} Å/px, {distance} Å")
    sigma = distance / sampling
    # float64 for small images (cheap), float32 for large ones (memory and speed; the blurred
    # quantities are smooth, float32 keeps ~1e-6 relative precision).
    dtype = np.float64 if series[0].size < 1024 * 1024 else np.float32
    mean = np.zeros(series.shape[1:], dtype)
    scale = np.zeros(series.shape[1:], dtype)
    for image in series:  # one image at a time: memory of a few images, not of the series
        image = image.astype(dtype)[None]
        local_mean = gaussian_blur(image, sigma)
        mean += local_mean[0]
        scale += np.sqrt(np.clip(gaussian_blur((image - local_mean) ** 2, sigma)[0], 0, None))
    mean /= len(series)
    scale /= len(series)
    scale = np.maximum(scale, 1e-6 * max(scale.max(), 1e-12))
    out = np.empty(series.shape, np.float32)
    for i, image in enumerate(series):  # no series-sized temporaries
        out[i] = (image - mean) / scale
    return out[0] if squeeze else out


def _spot_positions(angle: float, q1: float) -> np.ndarray:
    """(qy, qx) in 1/Å of the first three rings of six-fold spots of a hexagonal lattice.

    Ring radii |b1|, |b1 + b2| = sqrt(3)|b1| and |2 b1| (thesis section 2.1.5), the second ring
    rotated by 30°.
    """
    spots = []
    for radius, offset in ((q1, 0.0), (np.sqrt(3) * q1, np.pi / 6), (2 * q1, 0.0)):
        phi = angle + offset + np.arange(6) * np.pi / 3
        spots.append(np.column_stack([radius * np.sin(phi), radius * np.cos(phi)]))
    return np.concatenate(spots)


def _half_power(series: np.ndarray) -> np.ndarray:
    """Summed Hann-windowed power spectrum of a series on the real-FFT half plane.

    ``(H, W // 2 + 1)`` float64, rows in FFT order (frequency index ``ky`` at row ``ky mod H``),
    columns ``kx = 0 .. W // 2``; the other half follows from ``P(-q) = P(q)`` (real images).
    """
    from scipy import fft

    h, w = series.shape[1:]
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.zeros((h, w // 2 + 1))
    for image in series:
        f = fft.rfft2((image - image.mean()) * window, workers=-1)
        power += f.real.astype(np.float64) ** 2 + f.imag.astype(np.float64) ** 2
    return power


def _sample_power(power: np.ndarray, shape: tuple[int, int], sampling: float, qy, qx) -> np.ndarray:
    """Bilinear samples of a half-plane power spectrum at frequencies ``(qy, qx)`` (1/Å)."""
    from scipy.ndimage import map_coordinates

    h, w = shape
    flip = qx < 0  # Friedel symmetry: P(-q) = P(q)
    qy, qx = np.where(flip, -qy, qy), np.abs(qx)
    # Rows shifted so that ky = 0 sits at row h // 2 (then the bilinear interpolation never wraps).
    shifted = np.fft.fftshift(power, axes=0)
    rows = h // 2 + qy * sampling * h
    cols = qx * sampling * w
    return map_coordinates(shifted, [rows, cols], order=1, mode="nearest")


def _power_at(power: np.ndarray, ky: np.ndarray, kx: np.ndarray) -> np.ndarray:
    """Half-plane power at integer frequency indices ``(ky, kx)`` of either sign (``P(-q) = P(q)``)."""
    flip = kx < 0
    ky, kx = np.where(flip, -ky, ky), np.abs(kx)
    return power[ky % power.shape[0], np.minimum(kx, power.shape[1] - 1)]


def _refine_spot(power: np.ndarray, shape: tuple[int, int], sampling: float, qy: float, qx: float):
    """Sub-pixel position ``(qy, qx)`` in 1/Å of the power maximum within 2 px of ``(qy, qx)``.

    The maximum pixel, then a three-point parabola along each axis (the spot of a Hann-windowed,
    1-px-smoothed spectrum is close to a Gaussian of ~1.3 px, for which this is within ~0.05 px).
    """
    h, w = shape
    fy, fx = 1 / (h * sampling), 1 / (w * sampling)
    ky0, kx0 = int(round(qy / fy)), int(round(qx / fx))
    dy, dx = np.mgrid[-2:3, -2:3]
    values = _power_at(power, ky0 + dy, kx0 + dx)
    iy, ix = np.unravel_index(int(np.argmax(values)), values.shape)
    ky, kx = ky0 + iy - 2, kx0 + ix - 2
    d = np.array([-1, 0, 1])
    offsets = []
    for line in (_power_at(power, ky + d, np.full(3, kx)), _power_at(power, np.full(3, ky), kx + d)):
        curvature = line[0] - 2 * line[1] + line[2]
        offsets.append(float(np.clip(0.5 * (line[0] - line[2]) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0)
    return (ky + offsets[0]) * fy, (kx + offsets[1]) * fx


def _ring_significance(
    power: np.ndarray, shape: tuple[int, int], sampling: float, q: float, tolerance: float, n_angles: int
) -> tuple[np.ndarray, np.ndarray]:
    """Significance (robust σ) of the ring ``q (1 ± tolerance)`` at ``n_angles`` directions in [0, π).

    At each direction the ring's power (the maximum over the radial band) is divided by the
    background just inside and outside the band (the mean of three radii each side, 3.5-5.5
    frequency pixels beyond the band, median-smoothed over ±10° of azimuth: it follows the
    Thon rings and an anisotropic background). The ratio's level and spread come from its lower
    half (median, ``(q50 - q10) / 1.2816``), which the spots do not raise while they cover less
    than ~40 % of the ring. Returns the significance and the radius of the maximum (1/Å) per direction.
    """
    from scipy.ndimage import median_filter

    h, w = shape
    dq = 1 / (max(h, w) * sampling)  # finest frequency step
    gap = 3.5 / (min(h, w) * sampling)  # 3.5 of the coarser frequency pixels
    angles = np.arange(n_angles) * np.pi / n_angles
    sin, cos = np.sin(angles), np.cos(angles)
    n_radii = max(3, 2 * int(np.ceil(tolerance * q / (0.5 * dq))) + 1)
    radii = q * (1 + np.linspace(-tolerance, tolerance, n_radii))
    ring = _sample_power(power, shape, sampling, radii[:, None] * sin, radii[:, None] * cos)
    peak, best = ring.max(axis=0), radii[ring.argmax(axis=0)]
    lo, hi = q * (1 - tolerance) - gap, q * (1 + tolerance) + gap
    around = np.concatenate([lo - np.arange(3) * dq, hi + np.arange(3) * dq])
    background = _sample_power(power, shape, sampling, around[:, None] * sin, around[:, None] * cos).mean(axis=0)
    window = max(3, int(round(n_angles * 20 / 180)) | 1)
    background = median_filter(background, window, mode="wrap")
    ratio = peak / np.maximum(background, 1e-300)
    base = np.median(ratio)
    spread = max((base - np.percentile(ratio, 10)) / 1.2816, 1e-12 * base, 1e-300)
    return (ratio - base) / spread, best


#: The rings of a hexagonal lattice's spots: (radius / |g1|, rotation of the spots in degrees).
_RINGS = ((1.0, 0.0), (float(np.sqrt(3)), 30.0), (2.0, 0.0))
_ORDER_NAMES = ("first", "second", "third")


def _find_domains(
    series: np.ndarray,
    sampling: float,
    lattice_constant: float,
    *,
    max_domains: int,
    radial_tolerance: float,
    min_significance: float,
    min_confirmation: float,
) -> tuple[list[SupportDomain], list[SupportDomain]]:
    """Accepted domains and rejected candidates (see :func:`detect_support_domains`)."""
    from scipy.ndimage import gaussian_filter
    from scipy.signal import find_peaks

    h, w = series.shape[1:]
    q_nominal = 2 / (np.sqrt(3) * lattice_constant)
    coarse = 1 / (min(h, w) * sampling)  # the coarser frequency pixel, 1/Å
    # rings inside the Nyquist frequency (with room for the background annuli)
    rings = [r for r in _RINGS if r[0] * q_nominal * (1 + radial_tolerance) + 6 * coarse < 1 / (2 * sampling)]
    if len(rings) < 2:
        return [], []  # the second-order ring is not sampled: nothing can be confirmed
    power = gaussian_filter(_half_power(series), 1.0, mode=("wrap", "nearest"))
    dq = 1 / (max(h, w) * sampling)
    # Four samples per frequency pixel along the outermost ring, a multiple of 6 over [0, π).
    n_angles = 6 * int(np.ceil(max(360, 4 * np.pi * rings[-1][0] * q_nominal / dq) / 6))
    third = n_angles // 3
    profiles = [
        _ring_significance(power, (h, w), sampling, m * q_nominal, radial_tolerance, n_angles) for m, _ in rings
    ]
    # a direction θ in [0, 60°) (sample index i) has its spots of ring k at samples
    # i + offset_k + j n/3, j = 0, 1, 2 (the other three are their Friedel mates)
    offsets = [int(round(rot / 180 * n_angles)) for _, rot in rings]
    separation = max(2.5 * coarse / q_nominal, np.radians(3.0))
    candidates: list[int] = []
    for k in range(min(2, len(rings))):  # a domain is detected on the first or second ring
        z = np.roll(profiles[k][0], -offsets[k]).reshape(3, third)
        weakest = z.min(axis=0)
        extended = np.concatenate([weakest, weakest, weakest[: third // 2]])
        peaks, _ = find_peaks(extended, distance=max(1, int(separation / (np.pi / 3) * third)))
        peaks = np.unique(peaks % third)
        candidates += list(peaks[np.argsort(weakest[peaks])[::-1]][: 2 * max_domains + 2])
    found = []

    def spots_of(z: np.ndarray, k: int, p: int) -> np.ndarray:
        """Samples of the three spots of ring ``k`` for direction ``p``, each the best of ±2 samples
        (a spot may sit a sample or two off the ideal direction: pixelation, small strain)."""
        ideal = (p + offsets[k] + np.arange(3) * third) % n_angles
        near = (ideal[:, None] + np.arange(-2, 3)[None, :]) % n_angles
        return near[np.arange(3), np.argmax(z[near], axis=1)]

    def fit(k: int, indices: np.ndarray, best_radius: np.ndarray) -> tuple[float, list[complex]]:
        """|g1| (1/Å) from the sub-pixel positions of ring ``k``'s spots, and their six-fold phases."""
        order, rotation = rings[k]
        values, phases = [], []
        for index in indices:
            phi, r = index * np.pi / n_angles, best_radius[index]
            qy, qx = _refine_spot(power, (h, w), sampling, r * np.sin(phi), r * np.cos(phi))
            values.append(np.hypot(qy, qx) / order)
            phases.append(np.exp(6j * (np.arctan2(qy, qx) - np.radians(rotation))))
        return float(np.mean(values)), phases

    for p in dict.fromkeys(candidates):
        weakest = [float(z[spots_of(z, k, p)].min()) for k, (z, _) in enumerate(profiles[:2])]
        detect = int(np.argmax(weakest))
        z, best_radius = profiles[detect]
        indices = spots_of(z, detect, p)
        q_detect, phases = fit(detect, indices, best_radius)
        # the other rings, read where this lattice puts them: m |g1| within ±1 % (at least ±1 px)
        confirmations = []
        for k in range(len(rings)):
            if k == detect:
                continue
            m = rings[k][0]
            tolerance = max(0.01, 1 / (min(h, w) * sampling * m * q_detect))
            zk, rk = _ring_significance(power, (h, w), sampling, m * q_detect, tolerance, n_angles)
            ik = spots_of(zk, k, p)
            q_k, more_k = fit(k, ik, rk)
            mismatch = abs(q_k / q_detect - 1)
            confirmations.append((mismatch <= radial_tolerance / 2, float(zk[ik].sum() / np.sqrt(3)), k, q_k, more_k))
        # the strongest ring at the radius this lattice predicts (a spot of another crystal
        # just beside the ring, e.g. MoS2's √7 ring 3 % outside graphene's 2 |g1|, does not count)
        _, confirmation, confirm, q_confirm, more = max(confirmations, key=lambda c: (c[0], c[1]))
        # the lattice constant from both rings' spots, weighted by their radii
        md, mc = rings[detect][0], rings[confirm][0]
        q1 = (md * q_detect + mc * q_confirm) / (md + mc)
        found.append(
            (
                SupportDomain(
                    angle=float(np.degrees(np.angle(np.mean(phases + more))) / 6 % 60),
                    lattice_constant=float(2 / (np.sqrt(3) * q1)),
                    significance=weakest[detect],
                    combined_significance=float(z[indices].sum() / np.sqrt(3)),
                    confirmation=confirmation,
                    q1=float(q1),
                    order=f"{_ORDER_NAMES[detect]} order, confirmed by the {_ORDER_NAMES[confirm]} order",
                ),
                abs(q_confirm / q_detect - 1),
            )
        )
    found.sort(key=lambda item: -item[0].significance)
    accepted: list[SupportDomain] = []
    rejected: list[SupportDomain] = []
    for domain, mismatch in found:
        reasons = []
        if domain.significance < min_significance:
            reasons.append(f"weakest spot {domain.significance:.1f}σ < {min_significance:g}σ")
        if domain.confirmation < min_confirmation:
            reasons.append(f"confirming ring {domain.confirmation:.1f}σ < {min_confirmation:g}σ")
        if abs(domain.lattice_constant / lattice_constant - 1) > radial_tolerance:
            reasons.append(
                f"a = {domain.lattice_constant:.3f} Å off {lattice_constant:g} Å by > {radial_tolerance:.0%}"
            )
        elif mismatch > radial_tolerance / 2:
            reasons.append(f"the two rings' radii disagree by {mismatch:.1%}")
        if any(_angle_distance(domain.angle, d.angle) < np.degrees(separation) for d in accepted):
            reasons.append("same direction as a stronger domain")
        if len(accepted) >= max_domains:
            reasons.append(f"more than max_domains = {max_domains}")
        if reasons:
            rejected.append(replace(domain, reason="; ".join(reasons)))
        else:
            accepted.append(domain)
    return accepted, rejected


def _angle_distance(a: float, b: float) -> float:
    """Distance of two six-fold directions in degrees (mod 60°)."""
    d = (a - b) % 60
    return min(d, 60 - d)


def detect_support_domains(
    images: np.ndarray,
    sampling: float,
    lattice_constant: float = GRAPHENE_A,
    *,
    max_domains: int = 4,
    radial_tolerance: float = RADIAL_TOLERANCE,
    min_significance: float = MIN_SIGNIFICANCE,
    min_confirmation: float = MIN_CONFIRMATION,
) -> list[SupportDomain]:
    """The domains (grains or rotated layers) of a hexagonal support lattice in a diffractogram.

    A hexagonal lattice of constant a has first-order spots at ``|g1| = 2 / (sqrt(3) a)``
    (graphene: 0.469 1/Å, 2.13 Å fringes), second-order spots at ``sqrt(3) |g1|`` rotated by 30°
    (1.23 Å) and third-order spots at ``2 |g1|`` (1.07 Å) (thesis [1]_ section 2.1.5; graphene's
    two-atom basis weakens none of them). The power spectrum of the series (Hann-windowed, summed
    over the images, smoothed by 1 frequency pixel) is read on these rings. At every direction
    the ring's power over the background just inside and outside the ring is expressed in robust
    standard deviations σ of that ratio over the ring (see ``_ring_significance``). A direction
    θ of first-order spots is a support domain only if

    * on the first or the second ring (within ``± radial_tolerance`` of its nominal radius),
      each of its three independent spots (θ, θ + 60°, θ + 120°, plus 30° on the second ring;
      the others are their Friedel mates) stands at least ``min_significance`` σ above the ring:
      six-fold, not one reflection of another crystal that happens to lie on the ring;
    * another of the three rings, read at the radius this lattice predicts (±1 %, at least
      ±1 frequency pixel), confirms it: its three spots together (sum / √3) stand at least
      ``min_confirmation`` σ above that ring, and their fitted radius agrees with the first
      ring's within ``radial_tolerance / 2``;
    * the lattice constant fitted to the sub-pixel positions of both rings' spots is within
      ``radial_tolerance`` of ``lattice_constant``.

    Either of the first two rings may be the stronger one: in a focal series the contrast
    transfer can all but remove one of them. A sample's own reflections (MoS2: 2.74 Å and
    1.58 Å), an amorphous ring or noise do not pass: on pure noise, on simulated bare MoS2 and on
    real 300 kV frames of a crystal without graphene the strongest candidate with a consistent
    geometry reaches ~5σ on both tests, simulated and real graphene ≥ 80σ. When the second ring
    lies beyond the Nyquist frequency (sampling coarser than ~0.58 Å/px for graphene) nothing
    can be confirmed and no domain is returned.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` or ``(H, W)``.
    sampling : float
        Å/px.
    lattice_constant : float
        Real-space lattice constant a in Å (graphene: 2.46 Å).
    max_domains : int
        At most this many domains are returned (the strongest).
    radial_tolerance : float
        Relative tolerance of the rings' radii and of the fitted lattice constant (a sampling
        calibrated a few % off, strain).
    min_significance, min_confirmation : float
        Acceptance thresholds in σ (see above).

    Returns
    -------
    list of SupportDomain
        Strongest first; empty when no support lattice is found.

    Raises
    ------
    ValueError
        For a wrong shape, NaN/Inf pixels or a non-positive sampling or lattice constant.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), section 2.1.5.
    """
    series = _as_series(images)
    if not (sampling > 0 and lattice_constant > 0):
        raise ValueError(f"sampling and lattice constant must be positive, got {sampling} Å/px, {lattice_constant} Å")
    accepted, _ = _find_domains(
        series,
        sampling,
        lattice_constant,
        max_domains=max_domains,
        radial_tolerance=radial_tolerance,
        min_significance=min_significance,
        min_confirmation=min_confirmation,
    )
    return accepted


def detect_lattice_angle(images: np.ndarray, sampling: float, lattice_constant: float = GRAPHENE_A) -> float | None:
    """Direction (rad, in [0, π/3)) of the strongest support domain's first-order spots, or None.

    For a lattice with a real-space vector at angle θ the first-order spots lie at θ + 30°
    (mod 60°). See :func:`detect_support_domains`; None when no support lattice is found.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` or ``(H, W)``.
    sampling : float
        Å/px.
    lattice_constant : float
        Real-space lattice constant a in Å (graphene: 2.46 Å).
    """
    domains = detect_support_domains(images, sampling, lattice_constant, max_domains=1)
    return domains[0].angle_rad if domains else None


def _fermi_mask_half(
    shape: tuple[int, int], sampling: float, spots: np.ndarray, radius: float, width: float
) -> np.ndarray:
    """Product of Fermi spot masks on the real-FFT half plane, ``(H, W // 2 + 1)`` float32.

    Each spot's factor ``1 - 1 / (1 + exp((|q - q_spot| - radius) / width))`` differs from 1 by
    less than ``exp(-17)`` (< float32 resolution) beyond ``radius + 17 width``, so it is evaluated
    only in that window around the spot (the mask of an 8192² image costs a few ms per spot).
    ``spots`` must be closed under ``q -> -q`` (six-fold sets are), so the half plane holds the
    whole, Friedel-symmetric mask.
    """
    h, w = shape
    nw = w // 2 + 1
    mask = np.ones((h, nw), np.float32)
    reach = radius + 17 * width
    fy, fx = 1 / (h * sampling), 1 / (w * sampling)  # frequency pixel, 1/Å
    for sy, sx in spots:
        ky = np.arange(int(np.floor((sy - reach) / fy)), int(np.ceil((sy + reach) / fy)) + 1)
        kx = np.arange(max(int(np.floor((sx - reach) / fx)), 0), min(int(np.ceil((sx + reach) / fx)), nw - 1) + 1)
        if not len(kx) or not len(ky):
            continue
        ky = ky[np.abs(ky) <= h // 2]  # stay below the Nyquist frequency
        d = np.hypot(ky[:, None] * fy - sy, kx[None, :] * fx - sx)
        factor = 1 - 1 / (1 + np.exp(np.clip((d - radius) / width, -50, 50)))
        mask[np.ix_(ky % h, kx)] *= factor.astype(np.float32)
    return mask


def _full_mask(half: np.ndarray, w: int) -> np.ndarray:
    """The ``(H, W)`` mask in FFT order from its real-FFT half plane (``M(-q) = M(q)``)."""
    h = half.shape[0]
    full = np.empty((h, w), half.dtype)
    full[:, : half.shape[1]] = half
    kx = np.arange(half.shape[1], w)
    full[:, kx] = half[(-np.arange(h)) % h][:, w - kx]
    return full


def support_filter(
    images: np.ndarray,
    sampling: float,
    *,
    lattice_constant: float = GRAPHENE_A,
    angle=None,
    spot_radius: float = 0.04,
    edge: float = 0.01,
    max_domains: int = 4,
    full_mask: bool = True,
) -> SupportFilterResult:
    """Remove a hexagonal support lattice (graphene) by Fourier filtering (thesis [1]_ section 2.1.5).

    The support's domains (rotated layers or grains) are found with
    :func:`detect_support_domains`; for each, the first three rings of six-fold spots (radii
    ``|b1|``, ``sqrt(3)|b1|``, ``2|b1|``, at the fitted radius and direction) are suppressed with
    Fermi-smoothed masks ``1 - 1 / (1 + exp((|q - q_spot| - r) / edge))`` (thesis section 3.2);
    the sample's own spots, at other radii, are kept. The FFTs are real FFTs in float32. When no
    support lattice is found, nothing is filtered: the images come back unchanged.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` or ``(H, W)`` intensities.
    sampling : float
        Å/px.
    lattice_constant : float
        Support lattice constant in Å (graphene 2.46 Å).
    angle : float or sequence of float, optional
        Spot direction(s) in rad (one per domain, at the nominal radius) to filter without
        detection (their significance is reported as NaN); detected when ``None``.
    spot_radius : float
        Radius of each mask in 1/Å (at least 1.5 frequency pixels is used).
    edge : float
        Width of the Fermi edge in 1/Å (at least 0.5 frequency pixel is used).
    max_domains : int
        Most domains detected.
    full_mask : bool
        Also return the ``(H, W)`` mask (else only its half plane, saves memory).

    Returns
    -------
    SupportFilterResult
        ``images`` (float32, same shape), ``domains``, ``filtered``, ``message`` (e.g.
        ``"filtered 2 graphene domains: 12.3° (a = 2.46 Å, 9.1σ), ..."`` or ``"no support
        lattice found: images unchanged"``), the rejected candidates and the mask.

    Raises
    ------
    ValueError
        For a wrong shape, NaN/Inf pixels or a non-positive sampling or lattice constant.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), sections 2.1.5 and 3.2.
    """
    from scipy import fft

    squeeze = np.asarray(images).ndim == 2
    series = _as_series(images)
    if not (sampling > 0 and lattice_constant > 0):
        raise ValueError(f"sampling and lattice constant must be positive, got {sampling} Å/px, {lattice_constant} Å")
    q_nominal = 2 / (np.sqrt(3) * lattice_constant)
    rejected: list[SupportDomain] = []
    if angle is None:
        domains, rejected = _find_domains(
            series,
            sampling,
            lattice_constant,
            max_domains=max_domains,
            radial_tolerance=RADIAL_TOLERANCE,
            min_significance=MIN_SIGNIFICANCE,
            min_confirmation=MIN_CONFIRMATION,
        )
    else:
        nan = float("nan")
        domains = [
            SupportDomain(float(np.degrees(a) % 60), float(lattice_constant), nan, nan, nan, float(q_nominal))
            for a in np.atleast_1d(angle)
        ]
    if not domains:
        unchanged = series.copy() if series is np.asarray(images) else series
        return SupportFilterResult(
            images=unchanged[0] if squeeze else unchanged,
            domains=(),
            filtered=False,
            message="no support lattice found: images unchanged",
            rejected=tuple(rejected),
        )
    h, w = series.shape[1:]
    dq = max(1 / (h * sampling), 1 / (w * sampling))
    radius, width = max(spot_radius, 1.5 * dq), max(edge, 0.5 * dq)
    spots = np.concatenate([_spot_positions(d.angle_rad, d.q1) for d in domains])
    mask = _fermi_mask_half((h, w), sampling, spots, radius, width)
    filtered = np.empty(series.shape, np.float32)
    for i, image in enumerate(series):
        filtered[i] = fft.irfft2(fft.rfft2(image, workers=-1) * mask, s=(h, w), workers=-1)
    name = "graphene" if np.isclose(lattice_constant, GRAPHENE_A, rtol=0.01) else "support"
    n = len(domains)
    listing = (
        ", ".join(d.describe() for d in domains) if angle is None else ", ".join(f"{d.angle:.1f}°" for d in domains)
    )
    return SupportFilterResult(
        images=filtered[0] if squeeze else filtered,
        domains=tuple(domains),
        filtered=True,
        message=f"filtered {n} {name} domain{'s' if n > 1 else ''}{'' if angle is None else ' (given)'}: {listing}",
        rejected=tuple(rejected),
        mask=_full_mask(mask, w) if full_mask else None,
        mask_half=mask,
    )


def resample(images: np.ndarray, sampling: float, new_sampling: float) -> np.ndarray:
    """Resample images from ``sampling`` to ``new_sampling`` Å/px (cubic spline, scipy).

    Pixel ``(0, 0)`` stays centred at ``(0, 0)`` Å, so a position ``p`` in Å is pixel ``p /
    new_sampling`` of the output. Downsampling is preceded by a Gaussian anti-alias filter.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` or ``(H, W)``.
    sampling, new_sampling : float
        Å/px of the input and of the output.

    Returns
    -------
    numpy.ndarray
        float32, ``(N, H', W')`` with ``H' = floor((H - 1) * sampling / new_sampling) + 1``.
    """
    from scipy.ndimage import affine_transform, gaussian_filter

    squeeze = np.asarray(images).ndim == 2
    series = _as_series(images)
    if not (sampling > 0 and new_sampling > 0):
        raise ValueError(f"samplings must be positive, got {sampling} and {new_sampling} Å/px")
    if np.isclose(sampling, new_sampling, rtol=1e-4):
        return series[0] if squeeze else series
    ratio = new_sampling / sampling
    h, w = series.shape[1:]
    nh, nw = int(np.floor((h - 1) / ratio)) + 1, int(np.floor((w - 1) / ratio)) + 1
    out = np.empty((len(series), nh, nw), np.float32)
    for i, im in enumerate(series):
        if ratio > 1:
            im = gaussian_filter(im, 0.5 * np.sqrt(ratio**2 - 1))
        # A diagonal affine map: the same cubic spline at the same coordinates i * ratio as
        # map_coordinates, without coordinate arrays (half the time, no (2, H', W') float64).
        out[i] = affine_transform(im, [ratio, ratio], output_shape=(nh, nw), order=3, mode="nearest")
    return out[0] if squeeze else out


def preprocess(
    images: np.ndarray, sampling: float, *, remove_support: bool = True, normalization_distance: float = 12.0
) -> np.ndarray:
    """What a network sees: support Fourier filter (optional), then local normalization.

    ``images`` ``(N, H, W)`` at ``sampling`` Å/px -> float32 of the same shape.
    """
    if remove_support:
        images = support_filter(images, sampling).images
    return local_normalize(images, sampling, normalization_distance)
