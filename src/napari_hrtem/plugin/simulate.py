"""Simulation for the GUI and the sample data: focal series and ground truth as layer tuples."""

from __future__ import annotations

import numpy as np


def simulate_layers(
    size: int,
    sampling: float,
    graphene_layers: int,
    rotation: float,
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
    temperature: float = 300.0,
    phonon_configs: int = 4,
    draw_microscope: bool = False,
    parameter_file=None,
    vibration_table=None,
):
    """Simulate a focal series; a generator yielding progress text, returning layer tuples.

    Units: size px, sampling Å/px, rotation and tilt degrees, defocus and steps Å (abTEM sign,
    defocus = -C10), Cs µm, C12, C21, focal spread, blur, jitter and stacking distance Å,
    dose e/Å², temperature K. ``rotation=None`` draws it from the thesis recipe.

    ``draw_microscope=True`` draws every microscope parameter (and, with ``temperature=None``,
    the phonon temperature) from the parameter file (``parameter_file``, default thesis
    Table 1) with ``seed`` instead of using the values given. ``vibration_table``: path of a
    coordination-number vibration table (:class:`napari_hrtem.simulation.vibrations.CoordinationTable`)
    replacing the Debye model. The image layer's metadata records every parameter drawn
    (``microscope``, ``image_records``: one per image, ``sample``, ``exit_wave``).
    """
    from napari_hrtem.io.sites import Sites
    from napari_hrtem.plugin.layers import image_layer_data, points_layer_data
    from napari_hrtem.simulation.imaging import (
        MicroscopeParameters,
        draw_microscope_parameters,
        exit_wave,
        focal_series,
        load_parameter_ranges,
    )
    from napari_hrtem.simulation.structures import make_mos2_sample
    from napari_hrtem.simulation.vibrations import CoordinationTable, draw_temperature

    rng = np.random.default_rng(seed)
    ranges = load_parameter_ranges(parameter_file or None)
    table = CoordinationTable.load(vibration_table) if vibration_table else None
    yield "building the sample…"
    sample = make_mos2_sample(
        size * sampling,
        rotation=rotation,
        graphene_layers=graphene_layers,
        vacancy_fraction=vacancy_fraction,
        hole_fraction=hole_fraction,
        seed=seed,
        formula=formula,
        carbon_vacancy_fraction=carbon_vacancy_fraction,
        stacking_distance=stacking_distance,
        tilt=tilt,
        jitter=jitter,
    )
    if draw_microscope:
        params = draw_microscope_parameters(rng, n_images, ranges)
        if temperature is None:
            temperature = draw_temperature(rng, ranges)
    else:
        params = MicroscopeParameters(
            defocus=defocus,
            defocus_steps=(defocus_step,) * (n_images - 1),
            Cs=cs_um * 1e4,
            C12=c12,
            phi12=float(rng.uniform(0, 2 * np.pi)),
            C21=c21,
            phi21=float(rng.uniform(0, 2 * np.pi)),
            focal_spread=focal_spread,
            blur=blur,
            dose=dose,
            mtf_c1=mtf_c1,
            mtf_c2=mtf_c2,
            mtf_c3=mtf_c3,
            readout=readout,
        )
    temperature = 300.0 if temperature is None else float(temperature)
    yield f"multislice exit wave ({len(sample.atoms)} atoms, {phonon_configs} frozen phonons at {temperature:.0f} K)…"
    wave = exit_wave(
        sample,
        (size, size),
        sampling,
        seed=seed,
        energy=params.energy,
        phonon_configs=phonon_configs,
        temperature=temperature,
        vibrations=table,
        debye_temperature=float(ranges["vibrations"]["debye_temperature"]),
    )
    yield "focal series…"
    images = focal_series(wave, params, (size, size), rng=np.random.default_rng(seed))
    truth = Sites(sample.sites, sample.classes, np.ones(len(sample.sites)), class_names=sample.class_names)
    return [
        image_layer_data(
            images,
            sampling,
            "focal series",
            defocus=params.defoci.tolist(),
            microscope=params.to_dict(),
            image_records=params.image_records(),
            sample=sample.params,
            exit_wave=wave.params,
            source="simulated",
        ),
        *points_layer_data(truth, sampling, "truth", visible=False),
    ]


def describe_parameters(metadata: dict) -> str:
    """Readable summary (with units) of the parameters recorded by :func:`simulate_layers`."""
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
            f"focal spread {m['focal_spread']:.2f} Å · blur {m['blur']:.3f} Å · {m['energy'] / 1e3:.0f} keV",
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
        lines += [
            (
                f"{w.get('phonon_configs')} frozen phonons at {w.get('temperature', 0):.0f} K "
                f"({w.get('vibrations', 'Debye')}, θ_D {w.get('debye_temperature', 580):.0f} K)"
            )
        ]
    return "\n".join(lines)
