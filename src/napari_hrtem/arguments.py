"""Range checks of numeric arguments, once in the core for every shell (API, CLI, widgets).

Each check returns the value (as ``int`` or ``float``) or raises :class:`ArgumentError` (a
``ValueError``) with one line naming the argument, its value and the allowed range, e.g.
``radius: got -1.0; must be a finite number > 0 and <= 5 Å``. The CLI prints it as
``napari-hrtem: error: ...`` with exit status 2. Light: no NumPy/torch at import.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

#: Largest matching/agreement radius, Å: MoS2's closest columns are 1.82 Å apart, so a radius of
#: a few Å already matches every site with its neighbours' (the thesis used 3 px, about 0.6 Å).
MAX_RADIUS = 5.0
#: Largest defocus, Å, of a simulated HRTEM image (a few µm: far beyond any focal series of
#: atomic columns, whose defocus is tens to hundreds of Å).
MAX_DEFOCUS = 50_000.0
#: Largest random seed (NumPy and torch take unsigned 64-bit seeds; 2**32 - 1 is enough for all).
MAX_SEED = 2**32 - 1


class ArgumentError(ValueError):
    """A numeric argument outside its allowed range (one line: name, value, range)."""


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool, unit: str) -> str:
    unit = f" {unit}" if unit else ""
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts) + unit if parts else "finite" + unit


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    unit: str = "",
) -> Any:
    """Return ``value`` as an int (``integer``) or float after checking it is finite and in range.

    Parameters
    ----------
    value : int or float
        The argument.
    name : str
        Its name in the message (the API parameter, as the CLI option without dashes).
    low, high : float, optional
        Bounds; ``low_open``/``high_open`` exclude them.
    integer : bool
        Must be a whole number (``bool`` is refused).
    unit : str
        Unit put after the range in the message.

    Raises
    ------
    ArgumentError
        Not a number (or not whole), NaN, infinite or out of range.
    """
    kind = "a whole number" if integer else "a finite number"
    must = f"must be {kind} {_range_text(low, high, low_open, high_open, unit)}".rstrip()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name}: got {value!r}; {must}")
    if integer:
        if isinstance(value, numbers.Integral):
            number: float = int(value)
        elif math.isfinite(float(value)) and float(value).is_integer():
            number = int(float(value))
        else:
            raise ArgumentError(f"{name}: got {value!r}; {must}")
    else:
        number = float(value)
        if not math.isfinite(number):
            raise ArgumentError(f"{name}: got {value!r}; {must}")
    if (low is not None and (number < low or (low_open and number == low))) or (
        high is not None and (number > high or (high_open and number == high))
    ):
        raise ArgumentError(f"{name}: got {value!r}; {must}")
    return number


def check_optional(value: Any, name: str, **limits: Any) -> Any:
    """:func:`check_number` for an argument that may be None (then None is returned)."""
    return None if value is None else check_number(value, name, **limits)


def check_radius(radius: Any, name: str = "radius") -> float:
    """A matching/agreement radius in Å: finite, > 0 and at most :data:`MAX_RADIUS`."""
    return check_number(radius, name, low=0.0, low_open=True, high=MAX_RADIUS, unit="Å")


def check_seed(seed: Any, name: str = "seed") -> int:
    """A random seed: a whole number in 0..:data:`MAX_SEED`."""
    return check_number(seed, name, low=0, high=MAX_SEED, integer=True)


def check_limit(limit: Any, name: str = "limit") -> int | None:
    """A number of samples to use (None: all): a whole number >= 1."""
    return check_optional(limit, name, low=1, integer=True)
