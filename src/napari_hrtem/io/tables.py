"""Review tables: the disagreement list of the networks and the score table, as CSV.

The disagreement list is what :func:`napari_hrtem.analysis.comparison.disagreements` returns: the
mean positions ``yx`` (Å, ``(y, x)``, origin at the centre of pixel (0, 0)) of the disputed atomic
columns, their ``kind`` (``"missed by <names>"`` or ``"class differs"``) and ``says``, what each
network says there (``"unet: S2; unetpp: S; msdnet: -"``, ``-``: the network found no column).
:func:`review_order` orders it for a person stepping through the sites, :func:`describe_disputed`
says one site in words and :func:`write_disagreements_csv` writes it.

The score table is what :func:`napari_hrtem.api.score` returns for each candidate (a network, the
consensus): :func:`write_scores_csv` writes one row per candidate and class.

Every writer is atomic (:func:`napari_hrtem.io.files.write_atomic`): an existing file is either
kept or replaced whole, never left half-written.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: What a network "says" at a column it did not find (in ``says`` and in the CSV).
MISSED = "missed"

#: Orders of :func:`review_order`.
ORDERS = ("position", "most disputed")

#: Columns of :func:`write_scores_csv`.
SCORE_COLUMNS = ("candidate", "class", "precision", "recall", "f1", "rms_A", "tp", "fp", "fn", "reference", "radius_A")


def parse_says(says: str) -> dict[str, str]:
    """What each network says at a disputed site, from one ``says`` entry.

    Parameters
    ----------
    says : str
        ``"<network>: <class or ->; ..."`` as
        :func:`napari_hrtem.analysis.comparison.disagreements` writes it.

    Returns
    -------
    dict
        Network name -> its class there, or :data:`MISSED` where it found no column; in the
        order of ``says``.

    Raises
    ------
    ValueError
        If an entry has no ``<network>: <class>`` form.
    """
    out: dict[str, str] = {}
    for part in str(says).split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, cls = part.rpartition(":")
        if not sep or not name.strip() or not cls.strip():
            raise ValueError(f"cannot read what the networks say from {says!r} (expected 'network: class; ...')")
        cls = cls.strip()
        out[name.strip()] = MISSED if cls == "-" else cls
    return out


def describe_disputed(says: str) -> str:
    """One disputed site in words: ``"unet S, unetpp S2, msdnet missed"``.

    Parameters
    ----------
    says : str
        One ``says`` entry (see :func:`parse_says`).

    Returns
    -------
    str
    """
    return ", ".join(f"{name} {cls}" for name, cls in parse_says(says).items())


def disputedness(says: str) -> float:
    """How disputed a site is: 1 minus the largest share of networks that say the same thing.

    A missed column counts as an answer of its own ("no column"): with three networks, ``S, S,
    missed`` scores 1/3 and ``S, S2, missed`` 2/3; 0 when every network says the same.

    Parameters
    ----------
    says : str
        One ``says`` entry (see :func:`parse_says`).

    Returns
    -------
    float
    """
    answers = list(parse_says(says).values())
    if not answers:
        return 0.0
    return 1.0 - max(answers.count(a) for a in set(answers)) / len(answers)


def review_order(yx: np.ndarray, says: Sequence[str], order: str = "position", *, band: float = 20.0) -> np.ndarray:
    """The order in which to step through disputed sites.

    Parameters
    ----------
    yx : numpy.ndarray
        ``(k, 2)`` positions ``(y, x)`` in Å of the disputed sites.
    says : sequence of str
        What each network says there, one entry per site (see :func:`parse_says`).
    order : {"position", "most disputed"}
        ``"position"``: in reading order, band by band of ``band`` Å from the top, left to right
        within a band, so that consecutive sites lie close together; ``"most disputed"``: the
        most disputed first (:func:`disputedness`), then by position.
    band : float
        Height of a band, Å.

    Returns
    -------
    numpy.ndarray
        ``(k,)`` int indices into ``yx`` and ``says``.

    Raises
    ------
    ValueError
        If ``order`` is unknown, ``band`` is not positive or the lengths differ.
    """
    yx = np.asarray(yx, float).reshape(-1, 2)
    if len(says) != len(yx):
        raise ValueError(f"{len(yx)} positions but {len(says)} 'says' entries")
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
    if not band > 0:
        raise ValueError(f"the band height must be positive, got {band} Å")
    rows = np.floor(yx[:, 0] / band)
    keys: list[np.ndarray] = [yx[:, 1], rows]  # np.lexsort: the last key sorts first
    if order == "most disputed":
        keys.append(-np.array([disputedness(s) for s in says], float))
    return np.lexsort(keys) if len(yx) else np.zeros(0, int)


def write_disagreements_csv(
    path: str | os.PathLike[str],
    yx: np.ndarray,
    kind: Sequence[str],
    says: Sequence[str],
    order: Sequence[int] | np.ndarray | None = None,
) -> Path:
    """Write the disagreement list as CSV: ``site,y,x,kind,<network>...,disputedness``.

    One row per disputed site; positions in Å (``y``, ``x``, origin at the centre of pixel
    (0, 0)); one column per network with its class there or ``missed``; ``site`` numbers the rows
    from 1 in the written order.

    Parameters
    ----------
    path : str or Path
        The CSV file (written atomically).
    yx : numpy.ndarray
        ``(k, 2)`` positions in Å.
    kind, says : sequence of str
        As :func:`napari_hrtem.analysis.comparison.disagreements` returns them.
    order : sequence of int, optional
        The row order (e.g. :func:`review_order`); default: as given.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If the lengths differ or a ``says`` entry cannot be read.
    napari_hrtem.io.files.WriteError
        If the file cannot be written (the message names it; an old file is kept).
    """
    from napari_hrtem.io.files import write_atomic

    yx = np.asarray(yx, float).reshape(-1, 2)
    if not (len(yx) == len(kind) == len(says)):
        raise ValueError(f"{len(yx)} positions, {len(kind)} kinds and {len(says)} 'says' entries: they must match")
    index = np.arange(len(yx)) if order is None else np.asarray(order, int).reshape(-1)
    parsed = [parse_says(s) for s in says]
    networks: list[str] = []
    for p in parsed:
        networks += [n for n in p if n not in networks]
    clash = {"site", "y", "x", "kind", "disputedness"} & set(networks)
    if clash:
        raise ValueError(f"network name(s) {sorted(clash)} clash with the table's columns")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["site", "y", "x", "kind", *networks, "disputedness"])
    for row, i in enumerate(index, 1):
        writer.writerow(
            [
                row,
                f"{yx[i, 0]:.4f}",
                f"{yx[i, 1]:.4f}",
                kind[i],
                *(parsed[i].get(n, MISSED) for n in networks),
                f"{disputedness(says[i]):.3f}",
            ]
        )
    return write_atomic(path, out.getvalue())


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def write_scores_csv(
    path: str | os.PathLike[str],
    scores: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    reference: str | None = None,
    radius: float | None = None,
) -> Path:
    """Write score tables as CSV: one row per candidate and class.

    Columns :data:`SCORE_COLUMNS`: ``candidate``, ``class`` (a class name or ``overall``),
    ``precision``, ``recall``, ``f1``, ``rms_A`` (RMS position error of the matched sites, Å),
    ``tp``, ``fp``, ``fn``, then ``reference`` (what the candidates were scored against) and
    ``radius_A`` (the matching radius, Å). An undefined figure (NaN: nothing to find and nothing
    found; no match for the RMS) is an empty cell.

    Parameters
    ----------
    path : str or Path
        The CSV file (written atomically).
    scores : mapping
        Candidate name -> :func:`napari_hrtem.api.score` of it (``{class: {"precision", "recall",
        "f1", "rms", "tp", "fp", "fn"}, "overall": {...}}``).
    reference : str, optional
        The name of the reference the candidates were scored against.
    radius : float, optional
        The matching radius, Å.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If ``scores`` is empty or an entry lacks a figure.
    napari_hrtem.io.files.WriteError
        If the file cannot be written (the message names it; an old file is kept).

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), section 4 (atomic F1).
    """
    from napari_hrtem.io.files import write_atomic

    if not scores:
        raise ValueError("no scores to write: evaluate first")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SCORE_COLUMNS)
    for name, per_class in scores.items():
        for cls, s in per_class.items():
            try:
                figures = [s["precision"], s["recall"], s["f1"], s["rms"], s["tp"], s["fp"], s["fn"]]
            except (KeyError, TypeError) as exc:
                raise ValueError(f"the scores of {name} {cls} lack {exc}") from exc
            writer.writerow(
                [
                    name,
                    cls,
                    *(_cell(v) for v in figures[:4]),
                    *(_cell(int(v)) for v in figures[4:]),
                    reference or "",
                    _cell(radius, 3),
                ]
            )
    return write_atomic(path, out.getvalue())
