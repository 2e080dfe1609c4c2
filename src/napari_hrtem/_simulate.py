"""Simulation for the GUI and the sample data: focal series and ground truth as layer tuples."""

from __future__ import annotations

import numpy as np


def simulate_layers(size: int, sampling: float, graphene_layers: int, rotation: float, vacancy_fraction: float,
                    hole_fraction: float, defocus: float, defocus_step: float, cs_um: float, focal_spread: float,
                    dose: float, seed: int):
    """Simulate a focal series; a generator yielding progress text, returning layer tuples."""
    from ._layers import image_layer_data, points_layer_data
    from .imaging import MicroscopeParameters, exit_wave, focal_series
    from .sites import Sites
    from .structures import make_mos2_sample

    yield "building the sample…"
    sample = make_mos2_sample(size * sampling, rotation=rotation, graphene_layers=graphene_layers,
                              vacancy_fraction=vacancy_fraction, hole_fraction=hole_fraction, seed=seed)
    yield f"multislice exit wave ({len(sample.atoms)} atoms)…"
    wave = exit_wave(sample, (size, size), sampling, seed=seed)
    params = MicroscopeParameters(defocus=defocus, defocus_steps=(defocus_step, defocus_step), Cs=cs_um * 1e4,
                                  focal_spread=focal_spread, dose=dose)
    yield "focal series…"
    images = focal_series(wave, params, (size, size), rng=np.random.default_rng(seed))
    truth = Sites(sample.sites, sample.classes, np.ones(len(sample.sites)))
    return [image_layer_data(images, sampling, "focal series", defocus=params.defoci.tolist(),
                             microscope=params.to_dict(), sample=sample.params, source="simulated"),
            *points_layer_data(truth, sampling, "truth", visible=False)]
