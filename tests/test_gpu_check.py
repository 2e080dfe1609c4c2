"""benchmarks/gpu_check.py (issue 16 item 3): its code paths run on the CPU (``--cpu-smoke``); without CUDA it skips."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _run(*args):
    env_threads = {"OMP_NUM_THREADS": "1"}
    import os

    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env_threads},
    )


def test_cpu_smoke_runs_every_part():
    out = _run("--cpu-smoke")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for name in ("unet", "unetpp", "msdnet"):
        rows = [line for line in text.splitlines() if line.strip().startswith(f"{name} plain float32")]
        assert len(rows) == 1 and rows[0].count(" ok") == 2, text  # float32 and auto: sites within tolerance
        assert any(line.strip().startswith(f"{name} batch 2x64²") and "ms/step" in line for line in text.splitlines())
    assert "tile size halved" in text and text.rstrip().endswith(tuple("0123456789s"))
    assert "all checks passed" in text


def test_without_cuda_it_skips_cleanly():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the script runs its GPU checks instead")
    out = _run()
    assert out.returncode == 0 and out.stdout.startswith("skipped: no CUDA device"), out.stdout + out.stderr
