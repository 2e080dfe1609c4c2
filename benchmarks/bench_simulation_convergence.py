"""Multislice settings of Table 1 vs the code's: how much do the images change, and at what cost?

Thesis Table 1 simulates with 0.25 Å slices, 10 frozen-phonon configurations and a 0.1 Å wave
sampling; the dataset code used 0.5 Å slices, 4 configurations and 0.05 Å. On one small
MoS2-on-graphene tile this measures, for noise-free focal series (the same microscope draws),
the RMS image difference (units of the vacuum intensity) of each setting against a reference
(0.25 Å slices, 10 configurations, 0.05 Å), the spread between two phonon seeds, the dose-noise
RMS at the Table 1 dose range, the shipped U-Net's atomic F1 on noisy series of each setting,
and the wall time of each exit wave (one core).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_simulation_convergence.py [SIZE_PX] [TEMPERATURE_K]
"""

import sys
import time

import numpy as np


def main(size: int = 96, temperature: float = 600.0, n_draws: int = 6):
    import dask

    import napari_hrtem as hrtem
    from napari_hrtem.io.sites import Sites
    from napari_hrtem.simulation.imaging import draw_microscope_parameters, exit_wave, focal_series
    from napari_hrtem.simulation.structures import make_mos2_sample

    dask.config.set(scheduler="synchronous")
    sampling = 0.22
    sample = make_mos2_sample(size * sampling, graphene_layers=1, rotation=12.0, seed=7)
    shape = (size, size)
    settings = {  # name: (wave sampling Å, slice thickness Å, configurations, phonon seed)
        "reference 0.05/0.25/10": (0.05, 0.25, 10, 1),
        "reference, other seed": (0.05, 0.25, 10, 2),
        "slices 0.5 (0.05/0.5/10)": (0.05, 0.5, 10, 1),
        "configs 4 (0.05/0.25/4)": (0.05, 0.25, 4, 1),
        "configs 4, other seed": (0.05, 0.25, 4, 3),
        "wave sampling 0.1 (Table 1: 0.1/0.25/10)": (0.1, 0.25, 10, 1),
        "code default 0.05/0.5/4": (0.05, 0.5, 4, 1),
    }
    rng = np.random.default_rng(0)
    draws = [draw_microscope_parameters(rng) for _ in range(n_draws)]
    waves, seconds = {}, {}
    for name, (ws, dz, n, seed) in settings.items():
        t0 = time.perf_counter()
        waves[name] = exit_wave(
            sample,
            shape,
            sampling,
            max_wave_sampling=ws,
            slice_thickness=dz,
            phonon_configs=n,
            temperature=temperature,
            seed=seed,
        )
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {seconds[name]:.1f} s", flush=True)
    clean = {name: np.stack([focal_series(w, p, shape, noise=False) for p in draws]) for name, w in waves.items()}
    ref = clean["reference 0.05/0.25/10"]
    contrast = float(ref.std(axis=(-2, -1)).mean())
    print(
        f"\n{size}x{size} px at {sampling} Å/px, {len(sample.atoms)} atoms, {temperature:.0f} K, {n_draws} Table 1 draws"
    )
    print(f"image contrast (std of the noise-free reference images): {contrast:.4f}")
    for log_dose in (2.5, 3.5, 5.0):
        print(f"dose noise RMS at 10^{log_dose} e/Å²: {1 / np.sqrt(10**log_dose * sampling**2):.4f}")
    base = seconds["reference 0.05/0.25/10"]
    print("\nsetting | RMS difference to reference | relative to contrast | exit-wave time s | cost vs reference")
    for name in settings:
        rms = float(np.sqrt(np.mean((clean[name] - ref) ** 2)))
        print(f"{name} | {rms:.5f} | {rms / contrast:.3f} | {seconds[name]:.1f} | {seconds[name] / base:.2f}")

    net = hrtem.load_network("unet")
    truth = Sites(sample.sites, sample.classes, np.ones(len(sample.sites)), class_names=sample.class_names)
    print("\nshipped U-Net, atomic F1 (overall) on noisy series, same noise seeds, mean over draws")
    for name in settings:
        f1 = []
        for k, p in enumerate(draws):
            images = focal_series(waves[name], p, shape, rng=np.random.default_rng(100 + k))
            sites = hrtem.predict(net, images, sampling=sampling, specimen_mask=False)
            f1.append(hrtem.score(sites, truth)["overall"]["f1"])
        print(f"{name} | {np.mean(f1):.3f} ± {np.std(f1) / np.sqrt(len(f1)):.3f}")


if __name__ == "__main__":
    main(*[int(a) if i == 0 else float(a) for i, a in enumerate(sys.argv[1:])])
