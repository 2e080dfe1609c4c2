"""Checks of a focal series before the networks run on it: clear errors instead of crashes or silent nonsense.

Called at the entry points (CLI ``predict``, the Predict widget, :func:`napari_hrtem.analysis.inference.predict_sites`).
Qt-free and light (NumPy only).
"""

from __future__ import annotations

import math

import numpy as np

#: Plausible pixel sizes of an HRTEM image in which atomic columns can be found, Å/px. MoS2's closest
#: columns are 1.82 Å apart, so above 1 Å/px (Nyquist 0.91 Å/px) they are not resolved; below
#: 0.01 Å/px (1 pm/px) the value is almost surely a unit mistake (e.g. nm or m taken as Å).
SAMPLING_RANGE = (0.01, 1.0)
#: Smallest image side, px, and smallest field of view, Å (a few columns).
MIN_SIZE_PX = 8
MIN_FIELD_ANGSTROM = 5.0


def check_sampling(sampling, where: str = "focal series") -> float:
    """Return ``sampling`` as a float after checking it is a plausible HRTEM pixel size.

    Parameters
    ----------
    sampling : float
        Pixel size in Å/px.
    where : str
        What the value belongs to (file or layer name), put first in the message.

    Raises
    ------
    ValueError
        Missing, not a number, not finite, not > 0, or outside :data:`SAMPLING_RANGE`.
    """
    if sampling is None:
        raise ValueError(f"{where}: no sampling (pixel size, Å/px) given")
    if isinstance(sampling, (bool, str, bytes)) or np.ndim(sampling) != 0:
        raise ValueError(f"{where}: sampling must be a number of Å/px, got {sampling!r}")
    try:
        value = float(sampling)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: sampling must be a number of Å/px, got {sampling!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: sampling must be a finite number > 0 Å/px, got {sampling!r}")
    lo, hi = SAMPLING_RANGE
    if not lo <= value <= hi:
        raise ValueError(
            f"{where}: sampling {value:.6g} Å/px is outside the range {lo}-{hi} Å/px in which atomic "
            "columns can be found (a unit mistake? 1 nm = 10 Å); give the right value with --sampling "
            "or in the Load widget"
        )
    return value


def check_focal_series(
    images, sampling, n_images: int | set[int] | None = None, where: str = "focal series"
) -> np.ndarray:
    """Check a raw focal series before prediction; return it as float32 ``(N, H, W)``.

    Parameters
    ----------
    images : array_like
        ``(N, H, W)`` intensities, axes (frame, y, x), increasing defocus.
    sampling : float
        Pixel size in Å/px (checked with :func:`check_sampling`).
    n_images : int or set of int, optional
        The series length(s) the networks need.
    where : str
        File or layer name, put first in every message.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, H, W)``.

    Raises
    ------
    ValueError
        Naming ``where`` and the problem: not numeric, a single 2-D image where a series is needed,
        the wrong number of frames, frames smaller than :data:`MIN_SIZE_PX` px or
        :data:`MIN_FIELD_ANGSTROM` Å, NaN/Inf pixels, a constant frame, or an implausible sampling.
    """
    arr = np.asarray(images)
    if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{where}: pixels must be real numbers, got dtype {arr.dtype}")
    needed = None if n_images is None else ({n_images} if isinstance(n_images, int) else set(n_images))
    need_text = "" if needed is None else f" of {'/'.join(map(str, sorted(needed)))} images"
    if arr.ndim == 2:
        raise ValueError(
            f"{where}: a single 2-D image {arr.shape}; the networks need a focal series{need_text} "
            "(N, H, W) ordered by increasing defocus"
        )
    if arr.ndim != 3:
        raise ValueError(f"{where}: expected a focal series (N, H, W), got shape {arr.shape}")
    if needed is not None and arr.shape[0] not in needed:
        raise ValueError(
            f"{where}: holds {arr.shape[0]} image(s) of shape {arr.shape[1:]}; the networks need a focal "
            f"series{need_text}"
        )
    value = check_sampling(sampling, where)
    h, w = arr.shape[1:]
    if min(h, w) < MIN_SIZE_PX or min(h, w) * value < MIN_FIELD_ANGSTROM:
        raise ValueError(
            f"{where}: images of {h}x{w} px ({h * value:.3g} x {w * value:.3g} Å) are too small; "
            f"each side needs at least {MIN_SIZE_PX} px and {MIN_FIELD_ANGSTROM:g} Å"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        arr = np.asarray(arr, dtype=np.float32)
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ValueError(f"{where}: {bad} NaN/Inf (or float32-overflowing) pixels")
    flat = [i for i, frame in enumerate(arr) if frame.min() == frame.max()]
    if flat:
        raise ValueError(
            f"{where}: image(s) {', '.join(str(i + 1) for i in flat)} of {len(arr)} are constant "
            f"(every pixel {float(arr[flat[0], 0, 0]):.6g}): nothing to find"
        )
    return arr


#: Arrays a training/validation set from :func:`napari_hrtem.training.datasets.write_dataset` must hold.
def check_simulation_request(
    size: int,
    sampling: float | None = None,
    dose: float | None = None,
    *,
    wave_sampling: float | None = None,
    graphene_layers: int | None = None,
    workers: int | None = None,
    **counts: int,
) -> None:
    """Check the CLI's simulation settings before anything is simulated.

    Parameters
    ----------
    size : int
        Image side, px (16-4096).
    sampling : float, optional
        Å/px, in :data:`SAMPLING_RANGE`.
    dose : float, optional
        Electron dose, e/Å² (finite, > 0).
    wave_sampling : float, optional
        Largest exit-wave sampling, Å (finite, > 0); with ``sampling`` the wave grid
        ``size * ceil(sampling / wave_sampling)`` px must not exceed
        :data:`napari_hrtem.io.limits.MAX_WAVE_SIDE` per side.
    graphene_layers : int, optional
        0 to :data:`napari_hrtem.io.limits.MAX_GRAPHENE_LAYERS`.
    workers : int, optional
        Local cluster processes: 0 (no cluster) to :data:`napari_hrtem.io.limits.MAX_WORKERS`.
    **counts : int
        Other counts that must be >= 1 (e.g. ``samples=...``), named as the CLI options.

    Raises
    ------
    ValueError
        Naming the option and the problem.
    """
    if not 16 <= size <= 4096:
        raise ValueError(f"--size: {size} px is outside 16-4096 px")
    if sampling is not None:
        check_sampling(sampling, "--sampling")
    if dose is not None and not (math.isfinite(dose) and dose > 0):
        raise ValueError(f"--dose: must be a finite number > 0 e/Å², got {dose}")
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: must be at least 1, got {value}")
    from napari_hrtem.io.limits import MAX_GRAPHENE_LAYERS, MAX_WAVE_SIDE, MAX_WORKERS

    if wave_sampling is not None:
        if isinstance(wave_sampling, bool) or not (math.isfinite(wave_sampling) and wave_sampling > 0):
            raise ValueError(f"--wave-sampling: must be a finite number > 0 Å, got {wave_sampling}")
        if sampling is not None:
            side = size * math.ceil(float(sampling) / wave_sampling - 1e-9)
            if side > MAX_WAVE_SIDE:
                raise ValueError(
                    f"--wave-sampling: {wave_sampling:g} Å for {size} px at {float(sampling):g} Å/px makes an "
                    f"exit-wave grid of {side} px per side, over the limit of {MAX_WAVE_SIDE} px (use a larger "
                    "--wave-sampling or a smaller --size)"
                )
    if graphene_layers is not None and not 0 <= graphene_layers <= MAX_GRAPHENE_LAYERS:
        raise ValueError(
            f"--graphene-layers: {graphene_layers} is outside 0-{MAX_GRAPHENE_LAYERS} (thesis Table 1: 0-6)"
        )
    if workers is not None and not 0 <= workers <= MAX_WORKERS:
        raise ValueError(
            f"--workers: {workers} is outside 0-{MAX_WORKERS} (0: no cluster, compute in this process; "
            "default: one per CPU core)"
        )
