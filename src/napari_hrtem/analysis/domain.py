"""Is the input what the networks were trained on? Warnings against their model cards' domains.

Each network's model card [3]_ holds the :class:`~napari_hrtem.models.card.Domain` of its training
data [1]_ (beam energy, sampling, focal series length, defocus steps and first defocus in abTEM's
sign convention [2]_, aberrations, dose, material, support). :func:`domain_warnings` compares what a
file or the user says about a focal series with it and returns one warning per quantity
outside, naming the file, the quantity, its value and the networks' range; networks with the
same range share one line. Where the defocus of the frames is not known,
:func:`frame_order` asks the networks themselves whether the frames look reversed.

The networks still run on such input: a warning says that their answer may not be trusted,
not that it is wrong. Hard mismatches (a focal series of the wrong length, networks labelling
different classes) stay errors (:func:`napari_hrtem.api.check_series`).

References
----------
.. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of two-dimensional
   materials", Bachelor project, Technical University of Denmark (2024), Table 1 (the training
   ranges).
.. [2] J. Madsen, T. Susi, "The abTEM code: transmission electron microscopy from first
   principles", Open Research Europe 1, 24 (2021) (defocus sign convention).
.. [3] M. Mitchell et al., "Model cards for model reporting", Proc. FAT* 2019, 220-229.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Relative slack on a range's ends (rounding of recorded values), of the larger end's magnitude.
TOLERANCE = 0.005

#: Edge (px of the input) of the central crop the frame-order check runs the networks on.
ORDER_CROP = 256

#: The frame-order check warns when the reversed order's mean column probability exceeds the
#: given order's by more than this (measured on simulated series: the correct order wins by
#: 0.022-0.089, mean of the three shipped networks; see docs/guide/networks.md).
ORDER_MARGIN = 0.01

#: Below this mean column probability in both orders the frame-order check is only a weak hint
#: (simulated in-domain series in their correct order: 0.99-1.00).
ORDER_CONFIDENT = 0.9

#: Column probability threshold of the sites the frame-order check averages over.
ORDER_THRESHOLD = 0.5


def _fmt(value: float) -> str:
    return f"{round(float(value), 4):g}"


def _span(rng: tuple[float, float] | None, unit: str) -> str:
    if rng is None:
        return "?"
    low, high = rng
    if low == high:
        return f"{_fmt(low)} {unit}"
    sep = " to " if low < 0 or high < 0 else "-"
    return f"{_fmt(low)}{sep}{_fmt(high)} {unit}"


def _outside(value: float, rng: tuple[float, float] | None) -> bool:
    if rng is None:
        return False
    slack = TOLERANCE * max(abs(rng[0]), abs(rng[1]))
    return bool(value < rng[0] - slack or value > rng[1] + slack)


def _where(series: Any) -> str:
    return ", ".join(Path(p).name for p in getattr(series, "sources", []) or []) or "focal series"


def _names(names: list[str]) -> str:
    return f"{', '.join(names)} {'was' if len(names) == 1 else 'were'}"


def _grouped(where: str, what: str, ranges: dict[str, str]) -> list[str]:
    """``ranges``: network name -> 'trained at ...' text; one line per distinct text."""
    groups: dict[str, list[str]] = {}
    for name, text in ranges.items():
        groups.setdefault(text, []).append(name)
    return [f"{where}: {what}, but {_names(names)} {text}" for text, names in groups.items()]


def _defocus_known(series: Any) -> tuple[list[float] | None, bool]:
    """The frames' defocus (Å) and whether it is in abTEM's sign convention."""
    defocus = getattr(series, "defocus", None)
    if defocus is None:
        return None, False
    convention = str((getattr(series, "metadata", None) or {}).get("defocus_convention") or "")
    return [float(d) for d in defocus], convention.lower().startswith("abtem")


def domain_warnings(
    series: Any,
    networks: Sequence[Any],
    *,
    order: bool = True,
    notes: list[str] | None = None,
    device: str | None = None,
) -> list[str]:
    """Where a focal series lies outside what the networks were trained on.

    Compared with each network's :class:`~napari_hrtem.models.card.Domain` (networks whose card
    has none are skipped): the beam energy (kV), the sampling (Å/px), the number of frames,
    and, when the defocus of the frames is known, the defocus steps and the first defocus (Å,
    abTEM convention: defocus = -C10, positive = underfocus; a defocus of unknown sign is
    checked by the size of its steps only) and their order. Unknown quantities (no energy or
    defocus in the file) are not checked, except the order of the frames: without defocus it
    is checked with the networks (:func:`frame_order`).

    Parameters
    ----------
    series : FocalSeries
        The focal series as the networks see it (``energy`` eV, ``sampling`` Å/px, ``defocus``
        Å per frame or None, ``sources`` name it in the warnings).
    networks : sequence of Network
        The networks (their model cards).
    order : bool
        Run the frame-order check when the defocus is not known (runs every network twice on
        a central crop of at most :data:`ORDER_CROP` px).
    notes : list of str, optional
        Receives a line saying what the frame-order check measured.
    device : str, optional
        Device of the frame-order check (default CUDA when available).

    Returns
    -------
    list of str
        One warning per quantity and group of networks with the same range, e.g.
        ``"focal_series_img07.dm3: beam energy 300 kV, but unet, unetpp, msdnet were trained at 50-80 kV"``.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), Table 1.
    """
    where = _where(series)
    cards = {net.name: net.card.domain for net in networks if net.card.domain is not None}
    out: list[str] = []
    energy = getattr(series, "energy", None)
    if energy is not None:
        kv = float(energy) / 1e3
        bad = {n: f"trained at {_span(d.energy, 'kV')}" for n, d in cards.items() if _outside(kv, d.energy)}
        out += _grouped(where, f"beam energy {_fmt(kv)} kV", bad)
    sampling = getattr(series, "sampling", None)
    if sampling is not None:
        bad = {
            n: f"trained on {_span(d.sampling, 'Å/px')} images"
            for n, d in cards.items()
            if _outside(float(sampling), d.sampling)
        }
        out += _grouped(where, f"sampling {_fmt(sampling)} Å/px", bad)
    frames = int(np.shape(series.images)[0])
    bad = {n: f"trained on {d.n_images} images" for n, d in cards.items() if d.n_images not in (None, frames)}
    out += _grouped(where, f"{frames} frames", bad)
    defocus, abtem = _defocus_known(series)
    if defocus is not None and len(defocus) > 1:
        steps = np.diff(defocus)
        told = f"defocus {', '.join(_fmt(d) for d in defocus)} Å, {'abTEM convention' if abtem else 'sign unknown'}"
        if abtem and np.all(steps < 0):
            out += _grouped(
                where,
                f"the frames are in order of decreasing defocus ({told})",
                {n: "trained on frames of increasing defocus" for n in cards},
            )
        else:
            size = steps if abtem else np.abs(steps)
            bad = {
                n: f"trained with steps of {_span(d.defocus_step, 'Å')}"
                for n, d in cards.items()
                if any(_outside(float(s), d.defocus_step) for s in size)
            }
            out += _grouped(where, f"defocus steps {', '.join(_fmt(s) for s in steps)} Å ({told})", bad)
        if abtem:
            bad = {
                n: f"trained with a first defocus of {_span(d.first_defocus, 'Å')} (abTEM convention)"
                for n, d in cards.items()
                if _outside(min(defocus), d.first_defocus)
            }
            out += _grouped(where, f"first defocus {_fmt(min(defocus))} Å", bad)
    elif defocus is None and order and frames > 1 and networks:
        try:
            check = frame_order(series, networks, device=device)
        except Exception as exc:  # a check must not lose the prediction it comments on
            check = None
            if notes is not None:
                notes.append(f"frame order not checked: {exc}")
        if check is not None:
            if notes is not None:
                notes.append(check.note())
            if check.reversed_looks_better:
                out.append(f"{where}: {check.warning()}")
    return out


@dataclass
class FrameOrder:
    """What the networks say about the order of the frames (:func:`frame_order`).

    Attributes
    ----------
    given, reversed : float
        Mean column probability at the sites found (threshold :data:`ORDER_THRESHOLD`), mean
        over the networks, for the frames as given and reversed.
    seconds : float
        Wall-clock time of the check.
    crop : (int, int)
        The central crop the networks ran on, px of the input.
    networks : list of str
        The networks that ran.
    """

    given: float
    reversed: float
    seconds: float
    crop: tuple[int, int]
    networks: list[str]

    @property
    def reversed_looks_better(self) -> bool:
        """Whether the reversed order is clearly more confident (by :data:`ORDER_MARGIN`)."""
        return self.reversed - self.given > ORDER_MARGIN

    def warning(self) -> str:
        """The warning's text (without the file name)."""
        low = max(self.given, self.reversed) < ORDER_CONFIDENT
        return (
            f"frame order: the networks are more confident with the frames reversed (mean column probability "
            f"{self.reversed:.2f} vs {self.given:.2f}"
            + ("; both low, as on input outside their domain: a weak hint" if low else "")
            + "); the file records no defocus: check the order (frames by increasing defocus, abTEM convention: "
            "positive = underfocus) or give --defocus"
        )

    def note(self) -> str:
        """One line of what was measured."""
        return (
            f"frame order (no defocus recorded): mean column probability {self.given:.3f} as given, "
            f"{self.reversed:.3f} reversed ({', '.join(self.networks)} on a central "
            f"{self.crop[0]}x{self.crop[1]} px crop, {self.seconds:.1f} s)"
        )


def frame_order(
    series: Any, networks: Sequence[Any], *, crop: int = ORDER_CROP, device: str | None = None
) -> FrameOrder | None:
    """Ask the networks whether the frames of a focal series look reversed.

    The networks were trained on frames in order of increasing defocus (abTEM convention).
    Each runs on a central crop of at most ``crop`` px twice, with the frames as given and
    reversed; the mean column probability at the sites it finds (threshold
    :data:`ORDER_THRESHOLD`), averaged over the networks, is higher for the order they were
    trained on. On 12 simulated series (160 px at 0.22 Å/px, 0-2 graphene layers, default and
    Table 1 microscopes) the given (correct) order won by 0.022-0.089 with the three shipped
    networks (MSD-net alone: 0.048-0.118).

    Parameters
    ----------
    series : FocalSeries
        ``images`` ``(N, H, W)`` and ``sampling`` Å/px.
    networks : sequence of Network
        The networks to ask.
    crop : int
        Largest edge of the central crop, px of the input.
    device : str, optional
        ``"cuda"`` or ``"cpu"``; default CUDA when available.

    Returns
    -------
    FrameOrder or None
        None when the series has fewer than two frames, no sampling or is too small.
    """
    from napari_hrtem.analysis.inference import predict_sites

    images = np.asarray(series.images, np.float32)
    sampling = getattr(series, "sampling", None)
    if images.ndim != 3 or images.shape[0] < 2 or not sampling:
        return None
    h, w = images.shape[1:]
    ch, cw = min(h, crop), min(w, crop)
    if min(ch, cw) < 32:
        return None
    r0, c0 = (h - ch) // 2, (w - cw) // 2
    window = np.ascontiguousarray(images[:, r0 : r0 + ch, c0 : c0 + cw])
    start = time.perf_counter()
    given: list[float] = []
    backwards: list[float] = []
    for net in networks:
        model = net.load(device)
        for frames, scores in ((window, given), (np.ascontiguousarray(window[::-1]), backwards)):
            sites, _ = predict_sites(net, frames, float(sampling), model=model, threshold=ORDER_THRESHOLD)
            scores.append(float(np.mean(sites.confidence)) if len(sites) else 0.0)
    return FrameOrder(
        given=float(np.mean(given)),
        reversed=float(np.mean(backwards)),
        seconds=time.perf_counter() - start,
        crop=(ch, cw),
        networks=[net.name for net in networks],
    )
