"""Size limits checked before memory is allocated or work is started: files, parameter files, settings.

A file declares its image size in its header (TIFF pages, NumPy headers, MRC headers, zip members, the
DigitalMicrograph/TIA/EMD tags); a compressed file can declare gigabytes in a few kilobytes. Every reader
checks the declared size with :func:`check_array_size` before it decodes anything, parameter files are
read with :func:`load_yaml_limited` / :func:`load_json_limited` (no alias bombs, no deep nesting), and
simulation settings are checked against :data:`MAX_WAVE_SIDE` and :data:`MAX_GRAPHENE_LAYERS`.

Limits (overridable for big machines with environment variables):

* :data:`MAX_PIXELS`: pixels of one image or focal series (``NAPARI_HRTEM_MAX_PIXELS``).
* :data:`MAX_BYTES`: bytes of one decoded array (``NAPARI_HRTEM_MAX_BYTES``).
* and never more than the memory the machine has available (:func:`available_memory`: physical memory
  available, and this process's ``RLIMIT_AS``/``RLIMIT_DATA`` headroom).

Qt-free; NumPy only (PyYAML imported where a YAML file is read).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

#: Pixels of one image or focal series: four 8192 x 8192 frames (1 GiB as float32).
MAX_PIXELS = 4 * 8192**2
#: Bytes of one decoded array (before the float32 copy): 2 GiB.
MAX_BYTES = 2 * 2**30
#: Bytes of a YAML/JSON parameter file or config.
MAX_TEXT_BYTES = 1 * 2**20
#: Nodes of a YAML document once its aliases are expanded (the packaged Table 1 file has ~200).
MAX_YAML_NODES = 100_000
#: Nesting depth of a YAML or JSON document.
MAX_DEPTH = 64
#: Largest side of a simulated exit-wave grid, px (``size * sampling / wave_sampling``; 8192² complex64
#: is 0.5 GiB per wave).
MAX_WAVE_SIDE = 8192
#: Graphene layers under a simulated flake (thesis Table 1: 0-6, with a margin).
MAX_GRAPHENE_LAYERS = 10
#: Worker processes of a local simulation cluster.
MAX_WORKERS = 256


class LimitError(ValueError):
    """A declared size or setting over a stated limit; the message names the file or option and the limit."""


def _env_limit(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(float(text))
    except ValueError:
        raise LimitError(f"{name}: must be a whole number, got {text!r}") from None
    if value < 1:
        raise LimitError(f"{name}: must be at least 1, got {text!r}")
    return value


def max_pixels() -> int:
    """:data:`MAX_PIXELS`, or the environment variable ``NAPARI_HRTEM_MAX_PIXELS``."""
    return _env_limit("NAPARI_HRTEM_MAX_PIXELS", MAX_PIXELS)


def max_bytes() -> int:
    """:data:`MAX_BYTES`, or the environment variable ``NAPARI_HRTEM_MAX_BYTES``."""
    return _env_limit("NAPARI_HRTEM_MAX_BYTES", MAX_BYTES)


def _proc_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> int:
    """Bytes this process may still allocate: the machine's available memory (psutil, ``/proc/meminfo``
    MemAvailable or ``sysconf``), lowered to the headroom under ``RLIMIT_AS`` / ``RLIMIT_DATA``."""
    avail: float = math.inf
    try:
        import psutil

        avail = float(psutil.virtual_memory().available)
    except Exception:
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) * 1024.0
        except (OSError, ValueError, IndexError):
            pass
        if not math.isfinite(avail):
            try:
                avail = float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
            except (ValueError, OSError, AttributeError):
                pass
    try:
        import resource

        for limit, key in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
            soft = resource.getrlimit(limit)[0]
            used = _proc_status(key)
            if soft != resource.RLIM_INFINITY and used is not None:
                avail = min(avail, max(soft - used, 0))
    except (ImportError, ValueError, OSError):
        pass
    return int(avail) if math.isfinite(avail) else 2**62


def human_bytes(n: float) -> str:
    """``1.5 GB`` style (powers of 1024)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TB"


def check_array_size(shape, dtype, where: str, *, copies: float = 1.0) -> None:
    """Refuse an array of ``shape`` and ``dtype`` declared by a file before it is decoded.

    Parameters
    ----------
    shape : sequence of int
        The declared shape.
    dtype : numpy dtype-like
        The declared element type.
    where : str
        The file (or member) the array belongs to, first in the message.
    copies : float
        float32 copies made after decoding (the readers make one), counted against the available memory.

    Raises
    ------
    LimitError
        Negative dimensions, more than :func:`max_pixels` pixels, more than :func:`max_bytes` bytes, or more
        than the memory available (:func:`available_memory`); one line naming ``where`` and the limit.
    """
    dims = [int(s) for s in shape]
    if any(d < 0 for d in dims):
        raise LimitError(f"{where}: declares a negative image size {tuple(dims)} (corrupt file?)")
    pixels = math.prod(dims)
    itemsize = np.dtype(dtype).itemsize
    decoded = pixels * itemsize
    need = decoded + copies * pixels * 4
    env = "NAPARI_HRTEM_MAX_PIXELS/NAPARI_HRTEM_MAX_BYTES"
    if pixels > max_pixels():
        raise LimitError(
            f"{where}: declares {tuple(dims)} = {pixels:,} pixels, over the limit of {max_pixels():,} pixels "
            f"per image or series (a damaged or hostile file? set {env} to raise it)"
        )
    if decoded > max_bytes():
        raise LimitError(
            f"{where}: declares {tuple(dims)} {np.dtype(dtype)} = {human_bytes(decoded)} decoded, over the "
            f"limit of {human_bytes(max_bytes())} (set {env} to raise it)"
        )
    avail = available_memory()
    if need > avail:
        raise LimitError(
            f"{where}: declares {tuple(dims)} {np.dtype(dtype)}, which needs {human_bytes(need)} to read, more "
            f"than the {human_bytes(avail)} of memory available"
        )


def check_text_file(path, what: str = "file") -> str:
    """The text of a parameter file or config after checking its size (:data:`MAX_TEXT_BYTES`)."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise LimitError(f"{path}: {human_bytes(size)}, over the limit of {human_bytes(MAX_TEXT_BYTES)} for a {what}")
    return path.read_text(encoding="utf-8")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def json_depth(text: str) -> int:
    """Greatest nesting depth of ``[`` / ``{`` in JSON text (strings skipped), without parsing it."""
    brackets = re.sub(r"[^\[\]{}]", "", _STRING.sub("", text))
    depth = best = 0
    for ch in brackets:
        depth += 1 if ch in "[{" else -1
        best = max(best, depth)
    return best


def load_json_limited(text: str, where: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` refusing documents nested deeper than ``max_depth`` (no RecursionError).

    Raises
    ------
    LimitError
        Nested too deeply; ``ValueError`` (``json.JSONDecodeError``) for invalid JSON.
    """
    depth = json_depth(text)
    if depth > max_depth:
        raise LimitError(f"{where}: JSON nested {depth} levels deep, over the limit of {max_depth}")
    return json.loads(text)


def _yaml_loader():
    import yaml

    class LimitedLoader(yaml.SafeLoader):
        """SafeLoader that refuses documents nested deeper than :data:`MAX_DEPTH` or whose aliases expand
        to more than :data:`MAX_YAML_NODES` nodes ("billion laughs")."""

        _depth = 0

        def compose_node(self, parent, index):
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    mark = self.peek_event().start_mark
                    raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep (line {mark.line + 1})")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def compose_document(self):
            node = super().compose_document()
            sizes: dict[int, int] = {}

            def expanded(n) -> int:  # nodes once every alias is expanded; shared nodes counted each time
                if id(n) in sizes:
                    return sizes[id(n)]
                sizes[id(n)] = 1  # a recursive alias counts once
                total = 1
                if isinstance(n, yaml.SequenceNode):
                    total += sum(expanded(c) for c in n.value)
                elif isinstance(n, yaml.MappingNode):
                    total += sum(expanded(k) + expanded(v) for k, v in n.value)
                sizes[id(n)] = total = min(total, MAX_YAML_NODES + 1)
                return total

            if node is not None and expanded(node) > MAX_YAML_NODES:
                raise yaml.YAMLError(
                    f"its aliases/anchors expand to more than {MAX_YAML_NODES:,} entries (an alias bomb?)"
                )
            return node

    return LimitedLoader


def load_yaml_limited(text: str) -> Any:
    """``yaml.safe_load`` with alias expansion and nesting bounded (:data:`MAX_YAML_NODES`, :data:`MAX_DEPTH`).

    Raises
    ------
    yaml.YAMLError
        Invalid YAML, an alias bomb or too deep nesting.
    """
    import yaml

    return yaml.load(text, Loader=_yaml_loader())
