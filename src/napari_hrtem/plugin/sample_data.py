"""npe2 sample data: a simulated MoS2-on-graphene focal series with its ground truth."""

from __future__ import annotations


def sample_focal_series():
    """Layer tuples: a 256x256, 3-image focal series (0.22 Å/px, 2 graphene layers) + truth Points.

    Takes a few seconds (abTEM multislice).
    """
    from napari_hrtem.plugin.simulate import simulate_layers

    gen = simulate_layers(256, 0.22, 2, 10.0, 0.03, 0.02, -50.0, 50.0, 0.0, 7.5, 1e4, 0)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value
