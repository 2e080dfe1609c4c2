"""Shared fixtures: a tiny simulated focal series made by the project itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
needs_realdata = pytest.mark.skipif(
    not REALDATA.is_dir(), reason="../shared/realdata not present (a user's clone has no ../shared)"
)


@pytest.fixture(scope="session")
def tiny_sample():
    """MoS2 on one graphene layer, 128x128 px at 0.22 Å/px, with its ground truth."""
    from napari_hrtem.simulation.structures import make_mos2_sample

    return make_mos2_sample(128 * 0.22, graphene_layers=1, rotation=12.0, seed=7)


@pytest.fixture(scope="session")
def tiny_wave(tiny_sample):
    from napari_hrtem.simulation.imaging import exit_wave

    return exit_wave(tiny_sample, (128, 128), 0.22, phonon_configs=2, seed=1)


@pytest.fixture(scope="session")
def tiny_series(tiny_sample, tiny_wave):
    """``(images (3, 128, 128) float32, sampling 0.22, sample)`` at a high dose."""
    from napari_hrtem.simulation.imaging import MicroscopeParameters, focal_series

    params = MicroscopeParameters(defocus=-50.0, dose=3e4)
    images = focal_series(tiny_wave, params, (128, 128), rng=np.random.default_rng(0))
    return images, 0.22, tiny_sample
