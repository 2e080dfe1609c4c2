"""npe2 sample data: a simulated MoS2-on-graphene focal series with its ground truth."""

from __future__ import annotations


def sample_focal_series():
    """Layer tuples: a 256x256, 3-image focal series (0.22 Å/px, 2 graphene layers) + truth Points.

    :func:`napari_hrtem.api.simulate` with its default microscope, seed 0. Takes a few seconds
    (abTEM multislice).
    """
    from napari_hrtem.api import simulate
    from napari_hrtem.plugin.simulate import simulation_layers

    sim = simulate(
        256,
        0.22,
        graphene_layers=2,
        rotation=10.0,
        sample_options=dict(vacancy_fraction=0.03, hole_fraction=0.02),
        seed=0,
    )
    return simulation_layers(sim)
