"""Simulation for the GUI and the sample data: :func:`napari_hrtem.api.iter_simulate` as layer tuples."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from napari_hrtem.records import Simulation


def simulation_layers(sim: Simulation) -> list[tuple]:
    """Layer tuples of a :class:`~napari_hrtem.records.Simulation`.

    The focal series ``"focal series"`` (its metadata: ``sampling``, ``defocus``, ``energy`` (eV) and every
    parameter drawn: ``microscope``, ``image_records``, ``sample``, ``exit_wave``, ``source``)
    and the true sites as hidden Points, one layer per class (``"truth Mo"``, ...).
    """
    from napari_hrtem.plugin.layers import image_layer_data, points_layer_data

    sampling = float(sim.series.sampling or 0)
    return [
        image_layer_data(
            sim.series.images,
            sampling,
            "focal series",
            defocus=sim.series.defocus,
            energy=sim.series.energy,
            **sim.metadata,
        ),
        *points_layer_data(sim.truth, sampling, "truth", visible=False),
    ]


def simulate_layers(
    size: int,
    sampling: float,
    graphene_layers: int,
    rotation: float | None,
    vacancy_fraction: float,
    hole_fraction: float,
    defocus: float,
    defocus_step: float,
    cs_um: float,
    focal_spread: float,
    dose: float,
    seed: int,
    *,
    formula: str = "MoS2",
    carbon_vacancy_fraction: float = 0.0,
    stacking_distance: float | None = None,
    tilt: float = 0.0,
    jitter: float = 0.0,
    n_images: int = 3,
    c12: float = 0.0,
    c21: float = 0.0,
    blur: float = 0.15,
    readout: float = 0.01,
    mtf_c1: float = 0.4,
    mtf_c2: float = 0.15,
    mtf_c3: float = 1.2,
    temperature: float | None = 300.0,
    phonon_configs: int = 4,
    draw_microscope: bool = False,
    parameter_file=None,
    vibration_table=None,
    energy_kv: float | None = None,
    stop=None,
):
    """The Simulate widget's settings -> :func:`napari_hrtem.api.iter_simulate` -> layer tuples.

    A generator of :class:`~napari_hrtem.records.Progress` events returning
    :func:`simulation_layers`. Units: size px, sampling Å/px, rotation and tilt degrees, defocus
    and step Å (abTEM sign, defocus = -C10), Cs µm, C12, C21, focal spread, blur, jitter and
    stacking distance Å, dose e/Å², temperature K, beam energy ``energy_kv`` kV (None: the
    parameter file's, thesis 50 kV). ``rotation=None`` draws it from the thesis recipe; the
    astigmatism and coma azimuths are drawn from the seed. ``draw_microscope=True`` draws every
    microscope parameter but the beam energy given (and, with ``temperature=None``, the
    temperature) from the parameter file instead.

    ``stop``: an event (``is_set()``); when it is set the simulation ends at its next step (one
    frozen-phonon configuration at most) and returns None.
    """
    from napari_hrtem.api import MicroscopeParameters, iter_simulate

    microscope = MicroscopeParameters(
        defocus=defocus,
        defocus_steps=(defocus_step,) * (n_images - 1),
        Cs=cs_um * 1e4,
        C12=c12,
        C21=c21,
        focal_spread=focal_spread,
        blur=blur,
        dose=dose,
        mtf_c1=mtf_c1,
        mtf_c2=mtf_c2,
        mtf_c3=mtf_c3,
        readout=readout,
    )
    steps = iter_simulate(
        size,
        sampling,
        graphene_layers=graphene_layers,
        rotation=rotation,
        microscope=None if draw_microscope else microscope,
        draw_microscope=draw_microscope,
        n_images=n_images,
        sample_options=dict(
            vacancy_fraction=vacancy_fraction,
            hole_fraction=hole_fraction,
            formula=formula,
            carbon_vacancy_fraction=carbon_vacancy_fraction,
            stacking_distance=stacking_distance,
            tilt=tilt,
            jitter=jitter,
        ),
        phonon_configs=phonon_configs,
        temperature=temperature,
        parameter_file=parameter_file or None,
        vibration_table=vibration_table or None,
        seed=seed,
        energy=None if energy_kv is None else float(energy_kv) * 1e3,
    )
    while True:
        if stop is not None and stop.is_set():
            steps.close()
            return None
        try:
            event = next(steps)
        except StopIteration as end:
            return simulation_layers(end.value)
        yield event


def describe_parameters(metadata: dict) -> str:
    """Readable summary (with units) of the parameters recorded by :func:`simulation_layers`."""
    m = metadata.get("microscope", {})
    s = metadata.get("sample", {})
    w = metadata.get("exit_wave", {})
    lines = []
    if m:
        defoci = ", ".join(f"{d:.1f}" for d in metadata.get("defocus", []))
        lines += [
            f"defocus (abTEM, = -C10): {defoci} Å",
            (
                f"Cs/C30 {m['Cs'] / 1e4:.2f} µm · C12 {m['C12']:.1f} Å @ {np.degrees(m['phi12']):.0f}° · "
                f"C21 {m['C21']:.0f} Å @ {np.degrees(m['phi21']):.0f}°"
            ),
            f"beam energy {m['energy'] / 1e3:g} kV · focal spread {m['focal_spread']:.2f} Å · blur {m['blur']:.3f} Å",
            (
                f"dose {m['dose']:.3g} e/Å² · MTF c1 {m['mtf_c1']:.2f} c2 {m['mtf_c2']:.3f} c3 {m['mtf_c3']:.2f} · "
                f"readout {m['readout']:.4f}"
            ),
        ]
    if s:
        tilt = f" · tilt {s.get('tilt', 0):.2f}°" if s.get("tilt") else ""
        jitter = f" · jitter {s.get('jitter', 0):.3f} Å" if s.get("jitter") else ""
        support = (
            f"on {s['graphene_layers']} graphene layers at {s['stacking_distance']:.2f} Å, "
            f"{s.get('carbon_vacancies', 0)} C vacancies"
            if s.get("graphene_layers")
            else "no support"
        )
        lines += [
            (
                f"{s.get('formula', 'MoS2')} rotated {s['rotation']:.1f}°{tilt}{jitter}, {s['vacancies']} vacancies, "
                f"{support}"
            )
        ]
    if w:
        theta = w.get("debye_temperature", 580)  # one number, or {element or "default": K}
        theta = ", ".join(f"{k} {v:.0f}" for k, v in theta.items()) if isinstance(theta, dict) else f"{theta:.0f}"
        lines += [
            (
                f"{w.get('phonon_configs')} frozen phonons at {w.get('temperature', 0):.0f} K "
                f"({w.get('vibrations', 'Debye')}, θ_D {theta} K)"
            )
        ]
    return "\n".join(lines)
