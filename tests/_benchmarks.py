"""Load scripts of ``benchmarks/`` as modules for their tests."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@contextlib.contextmanager
def benchmark_modules(*names: str):
    """The modules ``benchmarks/<name>.py``, in order (each may import the ones before it), registered
    in ``sys.modules`` while in use (their dataclasses look their module up) and removed afterwards."""
    modules = []
    try:
        for name in names:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            modules.append(module)
        yield modules
    finally:
        for name in names:
            sys.modules.pop(name, None)
