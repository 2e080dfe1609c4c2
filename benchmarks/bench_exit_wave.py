"""Pipeline overhead of one exit wave: ``imaging.exit_wave`` vs the same bare abTEM multislice call.

Issue 3 target: throughput ratio (bare time / our time) ≥ 0.9. Both compute the same MoS2-on-graphene
sample (frozen phonons with the same Debye amplitudes, Kirkland potential, infinite projection, same
grid and slices); ours adds the sample checks, the amplitudes, the coherent average and the (y, x)
transposition. The two are timed alternately, best of ``REPEATS``, in one run.

Run:  python benchmarks/bench_exit_wave.py [SIZE_PX] [PHONON_CONFIGS] [REPEATS]
"""

import sys
import time

import numpy as np


def main(size: int = 128, phonon_configs: int = 4, repeats: int = 3):
    import abtem
    import dask

    from napari_hrtem.simulation.imaging import exit_wave
    from napari_hrtem.simulation.structures import random_sample
    from napari_hrtem.simulation.vibrations import frozen_phonon_sigmas

    dask.config.set(scheduler="synchronous")  # one core for both, no scheduler noise
    sampling, max_wave_sampling, slice_thickness, temperature, seed = 0.22, 0.05, 0.5, 300.0, 7
    rng = np.random.default_rng(0)
    sample = random_sample((size * sampling, size * sampling), rng, graphene_layers=2)
    m = int(np.ceil(sampling / max_wave_sampling - 1e-9))

    def ours():
        return exit_wave(
            sample,
            (size, size),
            sampling,
            max_wave_sampling=max_wave_sampling,
            slice_thickness=slice_thickness,
            phonon_configs=phonon_configs,
            temperature=temperature,
            seed=seed,
        ).array

    def bare():
        sigmas = frozen_phonon_sigmas(sample.atoms, temperature)
        atoms = abtem.FrozenPhonons(sample.atoms, num_configs=phonon_configs, sigmas=sigmas, seed=seed)
        potential = abtem.Potential(
            atoms,
            gpts=(size * m, size * m),
            slice_thickness=slice_thickness,
            parametrization="kirkland",
            projection="infinite",
        )
        return abtem.PlaneWave(energy=50e3).multislice(potential).compute(progress_bar=False).array

    ours(), bare()  # warm-up (imports, FFT plans)
    t_ours, t_bare = [], []
    for _ in range(repeats):
        for fn, times in ((bare, t_bare), (ours, t_ours)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    a, b = min(t_ours), min(t_bare)
    print(f"{len(sample.atoms)} atoms, {size}x{size} px image, wave grid {size * m}², {phonon_configs} phonon configs")
    print(
        f"bare abTEM multislice: {b:.2f} s   imaging.exit_wave: {a:.2f} s   throughput ratio {b / a:.3f} (target ≥ 0.9)"
    )


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:4]))
