"""Names are data, never paths: the checks of network, class and sample names, and of output paths.

A network's name (its model card's ``name``, ``train --name``, the Train widget's name field, a
fine-tuned network's name), a class name (the card's ``classes``) and a sample name become file
names (``<network>.csv``, ``<name>.pt``, ``<name>.checkpoint/``) and CSV cells. Each is checked
where it enters (:func:`check_name`): letters, digits and ``. _ - +``, not starting with ``.``,
``-`` or ``+``, not ending with ``.``, at most :data:`MAX_NAME` characters, not a Windows device
name. Output paths are built from checked names only, inside their folder (:func:`output_path`).

Names ``predict`` writes itself (:data:`RESERVED_NAMES`: ``consensus``, ``predict``,
``specimen_mask``) are refused for any network; the shipped networks' names
(:func:`shipped_names`) are refused for a network saved into the user networks folder (the error
suggests a free name, :func:`free_network_name`), and a user card that carries one (from an older
version) is listed under a distinct free name, ``<name>-user`` (the shipped network is never
replaced; see :func:`napari_hrtem.models.registry.scan_networks`). Names are compared without regard
to case (a case-insensitive file system would mix them).

CSV cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return) are written with a leading ``'`` (:func:`csv_text`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

#: Longest network, class or sample name.
MAX_NAME = 64
#: Longest class name.
MAX_CLASS_NAME = 32
#: The characters of a name.
NAME_CHARACTERS = "letters, digits and . _ - +"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")
#: Names of the files ``predict`` writes beside the networks' CSVs: no network may carry one.
RESERVED_NAMES = frozenset({"consensus", "predict", "specimen_mask"})
_DEVICES = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))})
#: First characters of a CSV cell that a spreadsheet runs as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def check_name(name: object, what: str = "network name", *, limit: int = MAX_NAME) -> str:
    """``name`` when it is a safe name, else ValueError naming ``what`` and the problem (one line)."""
    if not isinstance(name, str):
        raise ValueError(f"{what} must be a string, got {name!r}")
    shown = name if len(name) <= 80 else name[:77] + "..."
    if not name:
        raise ValueError(f"{what} is empty; use {NAME_CHARACTERS}")
    if len(name) > limit:
        raise ValueError(f"{what} {shown!r} is longer than {limit} characters")
    if not _NAME.fullmatch(name) or name.endswith("."):
        raise ValueError(
            f"{what} {shown!r} is not a safe name: use {NAME_CHARACTERS}, not starting with . - + "
            "nor ending with . (names are file names, never paths)"
        )
    if name.split(".")[0].lower() in _DEVICES:
        raise ValueError(f"{what} {name!r} is a reserved device name on Windows")
    return name


def check_network_name(name: object, what: str = "network name") -> str:
    """A safe name (:func:`check_name`) that is none of :data:`RESERVED_NAMES` (any case)."""
    check_name(name, what)
    assert isinstance(name, str)
    if name.lower() in RESERVED_NAMES:
        raise ValueError(
            f"{what} {name!r} is reserved (predict writes {name.lower()}.* beside the networks' CSVs); choose another"
        )
    return name


def shipped_names() -> frozenset[str]:
    """The shipped networks' names (lower case): the stems of the cards in ``models/weights``."""
    folder = Path(__file__).parent / "models" / "weights"
    return frozenset(p.stem.lower() for p in folder.glob("*.json"))


def free_network_name(base: str, taken: Iterable[str] = ()) -> str:
    """The first of ``base``, ``base-2``, ``base-3``, ... that is a safe user network name and none of
    ``taken``, :data:`RESERVED_NAMES` or the shipped networks' names (all compared without regard to case).

    Parameters
    ----------
    base : str
        The wanted name (e.g. ``"unet"`` or ``"my-unet"``); trimmed to leave room for the suffix.
    taken : iterable of str
        Names already in use (e.g. the networks in the user networks folder).

    Returns
    -------
    str
        A free name, e.g. ``free_network_name("unet")`` gives ``"unet-2"`` (``unet`` is shipped).
    """
    used = {str(t).lower() for t in taken} | RESERVED_NAMES | shipped_names()
    stem = base if _NAME.fullmatch(base or "") and not base.endswith(".") else "network"
    for i in range(1, 10_000):
        suffix = "" if i == 1 else f"-{i}"
        candidate = stem[: MAX_NAME - len(suffix)] + suffix
        if candidate.lower() not in used and candidate.split(".")[0].lower() not in _DEVICES:
            return candidate
    raise ValueError(f"no free network name like {base!r}")  # 10^4 networks of one name: never in practice


def check_user_network_name(name: object, what: str = "network name", taken: Iterable[str] = ()) -> str:
    """A network name that is neither reserved nor a shipped network's (any case).

    Raises
    ------
    ValueError
        For an unsafe or reserved name (:func:`check_network_name`), or a shipped network's name:
        the message says that the shipped network is kept and suggests a free name
        (:func:`free_network_name` of ``name`` and ``taken``).
    """
    check_network_name(name, what)
    assert isinstance(name, str)
    if name.lower() in shipped_names():
        raise ValueError(
            f"{what} {name!r} is a shipped network's name: a user network may not replace or shadow it "
            f"(the shipped {name.lower()} is kept); choose another, e.g. {free_network_name(name, taken)!r}"
        )
    return name


def check_class_name(name: object, what: str = "class name") -> str:
    """A safe class name (as :func:`check_name`, at most :data:`MAX_CLASS_NAME` characters)."""
    return check_name(name, what, limit=MAX_CLASS_NAME)


def output_path(folder: str | os.PathLike[str], name: str, suffix: str = "", what: str = "name") -> Path:
    """``folder / (name + suffix)`` for a safe ``name``, checked to resolve inside ``folder``.

    Raises
    ------
    ValueError
        If ``name`` is not safe (:func:`check_name`) or the path resolves outside ``folder`` (a
        link inside it pointing elsewhere).
    """
    check_name(name, what)
    folder = Path(folder)
    path = folder / f"{name}{suffix}"
    check_inside(folder, path)
    return path


def check_inside(folder: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``path`` when it resolves inside ``folder`` (links followed), else ValueError naming both."""
    root = Path(folder).resolve()
    target = Path(path).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"{path}: resolves to {target}, outside its output folder {root}; nothing was written there")
    return Path(path)


def csv_text(cell: object) -> str:
    """A text cell for a CSV: ``'`` before one that a spreadsheet would run as a formula."""
    text = str(cell)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
