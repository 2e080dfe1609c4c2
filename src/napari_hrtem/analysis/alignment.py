"""Drift alignment of a focal series: sub-pixel registration robust to the contrast changes through focus.

The frames of a through-focus series differ by more than a shift: the phase-contrast transfer
``sin χ`` changes sign and strength with defocus (the in-focus frame of a weak phase object has
almost no low-frequency contrast), and a crystal's lattice repeats every few Å. The method:

* each frame minus its mean is multiplied by a Hann window (the frame edges, which do not match
  after a drift, drop out) and Fourier transformed;
* its spectrum is band-passed to periods ``min_period``..``max_period`` Å (default 2 Å to a quarter
  of the field of view: above the noise-dominated highest frequencies and the camera's fixed
  pattern, below the illumination gradient);
* the cross-correlation of two band-passed frames (not whitened: each frequency weighs with its
  signal, so noise-only frequencies add little) is searched for the peak of largest *magnitude*,
  which is the right one also when the contrast of one frame is inverted (under- vs over-focus);
  each shift's correlation is divided by the noise level the windows leave there (so the window
  does not favour small shifts, i.e. a lattice vector near zero over a real drift of a few Å), and
  drifts up to about a quarter of the frame are searched; the peak is refined to
  ``1 / upsample_factor`` px by an upsampled (matrix) DFT around it, the method of Guizar-Sicairos
  et al., Opt. Lett. 33, 156 (2008) used by :func:`skimage.registration.phase_cross_correlation`;
* neighbouring frames (closest in defocus) are registered to each other and the shifts chained
  to the reference frame, the middle one by default.

Measured (tests/test_alignment.py, benchmarks/bench_alignment.py): simulated MoS2-on-graphene
series (three frames 50 Å apart) with known Fourier-shift drifts up to 12 px are recovered to
0.10 px median, 0.15 px worst; the larger errors come from a frame at Gaussian focus (amplitude
contrast only), which appears ~0.13 px (0.03 Å) off even without drift. Plain whitened phase
correlation over the full band errs by ~9 px there (lattice) and finds no drift on the real JEOL
series the package was tested on (camera fixed pattern), where this method finds about 14 px per frame,
consistent between bands (2-8 Å) and to 0.5 px between chained and direct registration. A band
keeping only periods above the lattice (e.g. 5 Å) fails on simulated series, whose only
non-periodic contrast is a weak flake edge; a perfectly periodic field of view has no unique
registration at all (any lattice vector fits): check ``Alignment.peaks`` and the shifts shown.

Coordinates: ``(y, x)`` = napari ``(row, col)``, pixels of the reference frame. A point ``p`` of
the reference frame is at ``p + shifts[i]`` in frame ``i``. After :func:`apply_alignment` with
cropping, pixel ``(0, 0)`` of the aligned series is pixel ``origin`` of the reference frame:
a position ``q`` Å found on the aligned series is ``q + origin * sampling`` Å in the reference
frame (:meth:`Alignment.to_reference`) and ``q + (origin + shifts[i]) * sampling`` in frame ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class AlignmentError(ValueError):
    """The frames cannot be registered (too few, too small, no common area, not finite)."""


@dataclass
class Alignment:
    """Result of :func:`register_series` (and :func:`apply_alignment`).

    Attributes
    ----------
    shifts : numpy.ndarray
        ``(N, 2)`` float64, px, ``(dy, dx)``: where a point of the reference frame lies in each
        frame, relative to the reference (``shifts[reference] == (0, 0)``).
    reference : int
        Index of the reference frame.
    sampling : float or None
        Å/px of the frames (for reporting in Å).
    origin : tuple of int
        ``(row, col)`` of the reference frame's pixel that is pixel ``(0, 0)`` of the cropped,
        aligned series; ``(0, 0)`` before cropping.
    shape : tuple of int
        ``(H, W)`` of the aligned series.
    peaks : list of float
        Normalized correlation peak height of each registered pair (1 = identical up to a
        shift and a contrast factor; near 0 = no match). ``peaks[i]`` is frame ``i``'s pair
        toward the reference; the reference's own entry is 1.
    settings : dict
        The parameters used (band in Å, or px without a sampling; upsample factor, sequential).
    """

    shifts: np.ndarray
    reference: int
    sampling: float | None = None
    origin: tuple[int, int] = (0, 0)
    shape: tuple[int, int] = (0, 0)
    peaks: list[float] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def shifts_angstrom(self) -> np.ndarray:
        """``(N, 2)`` shifts in Å (needs ``sampling``)."""
        if self.sampling is None:
            raise AlignmentError("no sampling: the shifts are known in pixels only")
        return self.shifts * self.sampling

    @property
    def origin_angstrom(self) -> np.ndarray:
        """``(2,)`` position in Å, in the reference frame, of pixel (0, 0) of the aligned series."""
        if self.sampling is None:
            raise AlignmentError("no sampling: the origin is known in pixels only")
        return np.asarray(self.origin, float) * self.sampling

    def to_reference(self, yx: np.ndarray, frame: int | None = None) -> np.ndarray:
        """Map positions in Å on the aligned series to Å in the original frame ``frame``.

        Parameters
        ----------
        yx : numpy.ndarray
            ``(M, 2)`` positions in Å, origin at the centre of pixel (0, 0) of the aligned series.
        frame : int, optional
            Frame of the original series; default the reference frame.

        Returns
        -------
        numpy.ndarray
            ``(M, 2)`` float64 positions in Å in that frame's pixel grid.
        """
        offset = np.asarray(self.origin, float)
        if frame is not None and frame != self.reference:
            offset = offset + self.shifts[frame]
        return np.asarray(yx, float).reshape(-1, 2) + offset * self._sampling_or_fail()

    def _sampling_or_fail(self) -> float:
        if self.sampling is None:
            raise AlignmentError("no sampling: positions in Å cannot be mapped")
        return float(self.sampling)

    def report(self) -> str:
        """One line per frame: shift in Å (and px) relative to the reference frame."""
        lines = []
        for i, (dy, dx) in enumerate(self.shifts):
            tag = " (reference)" if i == self.reference else ""
            peak = f", peak {self.peaks[i]:.2f}" if i < len(self.peaks) else ""
            if self.sampling is not None:
                lines.append(
                    f"frame {i}: dy {dy * self.sampling:+.2f} Å, dx {dx * self.sampling:+.2f} Å "
                    f"({dy:+.2f}, {dx:+.2f} px{peak}){tag}"
                )
            else:
                lines.append(f"frame {i}: dy {dy:+.2f} px, dx {dx:+.2f} px{peak}{tag}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-friendly summary (shifts in px and, with a sampling, in Å)."""
        d = {
            "reference": self.reference,
            "shifts_px": np.round(self.shifts, 4).tolist(),
            "origin_px": list(self.origin),
            "shape": list(self.shape),
            "peaks": [round(float(p), 4) for p in self.peaks],
            "settings": self.settings,
            "convention": "a point p (y, x) of the reference frame is at p + shift in each frame",
        }
        if self.sampling is not None:
            d.update(
                sampling=self.sampling,
                shifts_angstrom=np.round(self.shifts * self.sampling, 4).tolist(),
                origin_angstrom=(np.asarray(self.origin, float) * self.sampling).tolist(),
            )
        return d


def _band_spectrum(
    image: np.ndarray, sampling: float, min_period: float, max_period: float, whitening: float = 0.0
) -> np.ndarray:
    """Hann-windowed spectrum of ``image`` masked to periods ``min_period..max_period`` Å.

    ``whitening`` 0 keeps the amplitudes (cross-correlation), 1 keeps the phases only (phase
    correlation); 0 is the default because whitening lifts noise-only frequencies.
    """
    h, w = image.shape
    im = image - image.mean()
    im = im * np.outer(np.hanning(h), np.hanning(w))
    spec = np.fft.fft2(im)
    ky, kx = np.fft.fftfreq(h, sampling), np.fft.fftfreq(w, sampling)
    k = np.hypot(ky[:, None], kx[None, :])
    k_hi, k_lo = 1.0 / min_period, 1.0 / max_period
    # smooth (raised-cosine) edges: 20 % of each limit, so the mask rings little
    hi = np.clip((k_hi - k) / (0.2 * k_hi), 0, 1)
    lo = np.clip((k - k_lo) / (0.2 * k_lo), 0, 1)
    mask = (0.5 - 0.5 * np.cos(np.pi * hi)) * (0.5 - 0.5 * np.cos(np.pi * lo))
    mag = np.abs(spec)
    floor = 1e-3 * np.median(mag[mask > 0]) if np.any(mask > 0) else 1.0
    return spec / np.maximum(mag, floor) ** whitening * mask


def _window_overlap(h: int, w: int, power: int = 1) -> np.ndarray:
    """Overlap of the Hann window (to ``power``) with itself moved by each circular shift, 1 at no shift, (h, w)."""
    win = np.outer(np.hanning(h), np.hanning(w)) ** power
    spec = np.fft.fft2(win, s=(2 * h, 2 * w))
    full = np.fft.ifft2(np.abs(spec) ** 2).real  # linear autocorrelation, shifts -h..h
    rows = np.r_[0 : h - h // 2, 2 * h - h // 2 : 2 * h]
    cols = np.r_[0 : w - w // 2, 2 * w - w // 2 : 2 * w]
    out = full[np.ix_(rows, cols)]
    return out / out[0, 0]


def _overlap_at(overlap: np.ndarray, shift: np.ndarray) -> float:
    h, w = overlap.shape
    return float(overlap[round(float(shift[0])) % h, round(float(shift[1])) % w])


def _refine(product: np.ndarray, centre: np.ndarray, step: float, half: int) -> np.ndarray:
    """Peak of |correlation| on a (2 half + 1)^2 grid of spacing ``step`` px around ``centre``,
    evaluated by matrix DFTs of the cross-power spectrum ``product`` (an upsampled DFT)."""
    h, w = product.shape
    offsets = np.arange(-half, half + 1) * step
    ey = np.exp(2j * np.pi * np.outer(centre[0] + offsets, np.fft.fftfreq(h)))
    ex = np.exp(2j * np.pi * np.outer(np.fft.fftfreq(w), centre[1] + offsets))
    cc = np.abs(ey @ product @ ex)
    i, j = np.unravel_index(int(np.argmax(cc)), cc.shape)
    return np.array([centre[0] + offsets[i], centre[1] + offsets[j]])


def register_pair(
    reference: np.ndarray,
    moving: np.ndarray,
    sampling: float | None = None,
    *,
    min_period: float | None = None,
    max_period: float | None = None,
    upsample_factor: int = 100,
) -> tuple[np.ndarray, float]:
    """Sub-pixel shift between two frames of a focal series, band-limited phase correlation.

    Parameters
    ----------
    reference, moving : numpy.ndarray
        ``(H, W)`` images of the same shape.
    sampling : float, optional
        Å/px (sets the band in Å); without it the periods are in px.
    min_period : float
        Shortest period used, Å (default 2 Å; 8 px without a sampling). Raise it (e.g. 5 Å) for noisy images or a
        camera fixed pattern; it must stay well above 2 px.
    max_period : float, optional
        Longest period used, Å; default a quarter of the smaller image side (removes
        illumination gradients).
    upsample_factor : int
        Sub-pixel precision is ``1 / upsample_factor`` px.

    Returns
    -------
    shift : numpy.ndarray
        ``(2,)`` float64 ``(dy, dx)`` px: the content at ``p`` in ``reference`` is at
        ``p + shift`` in ``moving``.
    peak : float
        Normalized peak magnitude in 0..1: the correlation coefficient of the two band-passed,
        windowed frames at the found shift (its sign dropped).

    Raises
    ------
    AlignmentError
        Different shapes, non-finite pixels, or a band that is empty for this image size.
    """
    reference, moving = np.asarray(reference, np.float64), np.asarray(moving, np.float64)
    if reference.shape != moving.shape or reference.ndim != 2:
        raise AlignmentError(f"frames must be 2-D of one shape, got {reference.shape} and {moving.shape}")
    if not (np.isfinite(reference).all() and np.isfinite(moving).all()):
        raise AlignmentError("frames hold NaN or Inf pixels")
    if min_period is None:
        min_period = 8.0 if sampling is None else 2.0
    sampling = 1.0 if sampling is None else float(sampling)
    size = min(reference.shape) * sampling
    if min_period < 2 * sampling:
        raise AlignmentError(
            f"min_period {min_period:.3g} Å is below 2 px ({2 * sampling:.3g} Å at {sampling:.4g} Å/px)"
        )
    max_period = size / 4 if max_period is None else float(max_period)
    if not 0 < min_period * 1.5 < max_period:
        raise AlignmentError(
            f"band {min_period:.3g}-{max_period:.3g} Å is empty or too narrow for an image of "
            f"{reference.shape} px at {sampling:.4g} Å/px (needs max_period > 1.5 min_period)"
        )
    a = _band_spectrum(reference, sampling, min_period, max_period)
    b = _band_spectrum(moving, sampling, min_period, max_period)
    product = a * np.conj(b)
    h, w = reference.shape
    # The Hann window favours small shifts (and so a lattice vector near zero over a true drift of a
    # few Å): divide by the noise level the window leaves at each shift, sqrt(sum w^2(p) w^2(p - s)),
    # which makes the peak a signal-to-noise ratio; shifts where the windows overlap < 60 % (about a
    # quarter of the side) are not searched.
    overlap = _window_overlap(h, w)
    cc = np.abs(np.fft.ifft2(product)) / np.sqrt(np.maximum(_window_overlap(h, w, 2), 1e-12))
    cc[overlap < 0.6] = 0.0
    integer = np.array(np.unravel_index(int(np.argmax(cc)), cc.shape), float)
    integer = np.where(integer > np.array([h, w]) // 2, integer - np.array([h, w]), integer)
    shift = integer
    for step in (0.1, 1.0 / max(int(upsample_factor), 1)):  # upsampled DFT around the peak (Guizar-Sicairos 2008)
        if step >= 1.0:
            break
        shift = _refine(product, shift, step, 15)
    ky, kx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    phase = np.exp(2j * np.pi * (ky * shift[0] + kx * shift[1]))
    peak = abs(np.sum(product * phase)) / max(np.sqrt(np.sum(abs(a) ** 2) * np.sum(abs(b) ** 2)), 1e-30)
    peak = peak / max(_overlap_at(overlap, shift), 1e-12)
    # the correlation peaks at s where reference(p + s) = moving(p): a point p of the reference is at p - s
    return -np.asarray(shift, np.float64), float(min(peak, 1.0))


def register_series(
    images: np.ndarray,
    sampling: float | None = None,
    *,
    reference: int | None = None,
    min_period: float | None = None,
    max_period: float | None = None,
    upsample_factor: int = 100,
    sequential: bool = True,
) -> Alignment:
    """Drift of every frame of a focal series relative to a reference frame.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` focal series, any real dtype.
    sampling : float, optional
        Å/px; without it the band limits are in px (default band 8 px to a quarter of the side).
    reference : int, optional
        Reference frame; default the middle one, ``N // 2``.
    min_period, max_period, upsample_factor :
        See :func:`register_pair`.
    sequential : bool
        True: register each frame to its neighbour toward the reference and chain the shifts
        (neighbours differ least in defocus). False: register each frame to the reference.

    Returns
    -------
    Alignment
        ``shifts`` ``(N, 2)`` px relative to the reference frame, ``origin (0, 0)``, ``shape (H, W)``.

    Raises
    ------
    AlignmentError
        Not ``(N, H, W)``, ``reference`` out of range, non-finite pixels, or an empty band.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] < 1:
        raise AlignmentError(f"expected a focal series (N, H, W), got shape {images.shape}")
    n = images.shape[0]
    ref = n // 2 if reference is None else int(reference)
    if not 0 <= ref < n:
        raise AlignmentError(f"reference frame {ref} out of range for {n} frames")
    s = 1.0 if sampling is None else float(sampling)
    if not (np.isfinite(s) and s > 0):
        raise AlignmentError(f"sampling must be > 0 Å/px, got {sampling!r}")
    if min_period is None:
        min_period = 8.0 if sampling is None else 2.0
    shifts = np.zeros((n, 2))
    peaks = [1.0] * n
    kw = {
        "sampling": sampling and s,
        "min_period": min_period,
        "max_period": max_period,
        "upsample_factor": upsample_factor,
    }
    order = list(range(ref + 1, n)) + list(range(ref - 1, -1, -1))
    for i in order:
        towards = (i - 1 if i > ref else i + 1) if sequential else ref
        shift, peaks[i] = register_pair(images[towards], images[i], **kw)
        shifts[i] = shifts[towards] + shift
    settings = {
        "min_period": min_period,
        "max_period": max_period if max_period is not None else min(images.shape[1:]) * s / 4,
        "upsample_factor": upsample_factor,
        "sequential": sequential,
        "unit": "Å" if sampling is not None else "px",
    }
    return Alignment(
        shifts=shifts,
        reference=ref,
        sampling=None if sampling is None else s,
        origin=(0, 0),
        shape=tuple(images.shape[1:]),
        peaks=peaks,
        settings=settings,
    )


def apply_alignment(
    images: np.ndarray, alignment: Alignment, *, crop: bool = True, order: int = 3
) -> tuple[np.ndarray, Alignment]:
    """Shift every frame onto the reference frame's grid and crop to the area all frames cover.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)``, the series ``alignment`` was measured on.
    alignment : Alignment
        From :func:`register_series`.
    crop : bool
        Crop to the largest rectangle (in whole reference pixels) inside every shifted frame.
    order : int
        Spline order of :func:`scipy.ndimage.shift` (3 = cubic).

    Returns
    -------
    aligned : numpy.ndarray
        ``(N, H', W')`` float32; pixel ``(r, c)`` is pixel ``(r, c) + origin`` of the reference frame.
    alignment : Alignment
        A copy with ``origin`` and ``shape`` set.

    Raises
    ------
    AlignmentError
        Shape mismatch, or no common area (drift larger than the frame).
    """
    from dataclasses import replace

    from scipy.ndimage import map_coordinates

    images = np.asarray(images, np.float32)
    n, h, w = images.shape
    shifts = np.asarray(alignment.shifts, float)
    if shifts.shape != (n, 2):
        raise AlignmentError(f"{len(shifts)} shifts for {n} frames")
    if crop:
        # reference pixel p is valid in frame i when 0 <= p + shift_i <= size - 1
        y0, x0 = (int(np.ceil(max(0.0, *(-shifts[:, j])) - 1e-6)) for j in (0, 1))
        y1, x1 = (int(np.floor(min(size - 1.0, *(size - 1 - shifts[:, j])) + 1e-6)) for j, size in ((0, h), (1, w)))
        if y1 - y0 < 1 or x1 - x0 < 1:
            raise AlignmentError(
                f"the frames have no common area (shifts up to {np.abs(shifts).max():.1f} px for frames of {h}x{w} px)"
            )
    else:
        y0, x0, y1, x1 = 0, 0, h - 1, w - 1
    rows, cols = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float64)
    out = np.empty((n, y1 - y0 + 1, x1 - x0 + 1), np.float32)
    for i in range(n):
        out[i] = map_coordinates(images[i], [rows + shifts[i, 0], cols + shifts[i, 1]], order=order, mode="nearest")
    return out, replace(alignment, origin=(y0, x0), shape=(out.shape[1], out.shape[2]))


def align_series(
    images: np.ndarray, sampling: float | None = None, *, crop: bool = True, **kwargs
) -> tuple[np.ndarray, Alignment]:
    """:func:`register_series` then :func:`apply_alignment`; returns ``(aligned (N, H', W'), Alignment)``."""
    alignment = register_series(images, sampling, **kwargs)
    return apply_alignment(images, alignment, crop=crop)
