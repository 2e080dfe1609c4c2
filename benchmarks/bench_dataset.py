"""Dataset generation (`simulate-dataset`) with 2 dask workers against 1, side by side in one run.

Target (issue 3): 2 workers ≥ 1.6× faster than 1. Both local clusters use single-threaded worker
processes and are warmed up first (abTEM imported, its numba kernels compiled, FFTW planned on
every worker), so the times are those of the samples alone. The machine may be shared: the
script prints both times, the ratio and the load average.

``--paper`` also times ONE exit wave of a 140 Å × 140 Å MoS2-on-graphene sample at 0.05 Å wave
sampling with 10 frozen-phonon configurations (slow: minutes) and reports exit waves per hour
next to the exit-wave paper's figure (``shared/seeds/004``, Table A.2: 1000 MoS2@C exit waves in
3 h 3 min on 24 cores; that paper used Gaussian-smeared potentials, 0.2 Å slices, no frozen
phonons).

Run:  python benchmarks/bench_dataset.py [--structures 8] [--size 128] [--paper]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

PAPER_WAVES, PAPER_SECONDS, PAPER_CORES = 1000, 3 * 3600 + 3 * 60, 24


def _warm(recipe):
    """Run on every worker: import abTEM, compile its kernels and plan the FFTs with one sample
    of the benchmark's size (an index outside the dataset)."""
    from napari_hrtem.training.datastore import simulate_sample

    simulate_sample(10**6, recipe)
    return os.getpid()


def time_generation(n_workers: int, structures: int, settings: dict, root: Path) -> tuple[float, float]:
    """Wall time of the generation and the CPU seconds its samples took (summed over workers)."""
    import zarr
    from distributed import Client, LocalCluster

    from napari_hrtem.training.datastore import completed_samples, generate_dataset, make_recipe

    out = root / f"w{n_workers}.zarr"
    with (
        LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm, make_recipe(**settings))
        t0 = time.perf_counter()
        generate_dataset(out, structures, client=client, **settings)
        wall = time.perf_counter() - t0
    cpu = sum(
        zarr.open_group(str(out / "samples" / f"{i:06d}"), mode="r").attrs["cpu_seconds"]
        for i in completed_samples(out)
    )
    return wall, cpu


def paper_exit_wave() -> None:
    import dask

    from napari_hrtem.simulation.imaging import exit_wave
    from napari_hrtem.simulation.structures import make_mos2_sample

    sample = make_mos2_sample(140.0, graphene_layers=1, seed=0)
    print(
        f"140 Å x 140 Å MoS2 on 1 graphene layer: {len(sample.atoms)} atoms; wave 2800 x 2800 at 0.05 Å, "
        "10 frozen-phonon configurations, 0.5 Å slices, one thread",
        flush=True,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    with dask.config.set(scheduler="synchronous"):
        wave = exit_wave(sample, (700, 700), 0.2, max_wave_sampling=0.05, phonon_configs=10, temperature=300.0, seed=0)
    wall, seconds = time.perf_counter() - t0, time.process_time() - c0
    print(f"wall {wall:.0f} s, CPU {seconds:.0f} s (rates below use the CPU time: the machine may be shared)")
    paper_rate = PAPER_WAVES / (PAPER_SECONDS / 3600)
    print(
        f"one exit wave {wave.array.shape} at {wave.sampling:.3f} Å: {seconds:.0f} s -> {3600 / seconds:.1f} exit "
        f"waves per hour per core ({24 * 3600 / seconds:.0f} per hour on 24 such cores)"
    )
    print(
        f"paper (seeds/004 Table A.2): {PAPER_WAVES} MoS2@C exit waves in 3 h 3 min on {PAPER_CORES} cores = "
        f"{paper_rate:.0f} per hour, {paper_rate / PAPER_CORES:.1f} per hour per core (no frozen phonons)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--structures", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="image size, px")
    parser.add_argument("--image-epochs", type=int, default=2)
    parser.add_argument("--phonon-configs", type=int, default=2)
    parser.add_argument("--paper", action="store_true", help="also time one 140 Å MoS2@C exit wave (slow)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    settings = dict(
        image_epochs=args.image_epochs,
        shape=(args.size, args.size),
        phonon_configs=args.phonon_configs,
        wave_sampling=0.05,
        seed=1,
    )
    print(
        f"{args.structures} samples of {args.size}x{args.size} px at 0.215-0.235 Å/px, 0.05 Å wave sampling, "
        f"{args.phonon_configs} frozen-phonon configurations, {args.image_epochs} focal series each; "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t1, c1 = time_generation(1, args.structures, settings, Path(tmp))
        print(
            f"1 worker : {t1:6.1f} s wall ({t1 / args.structures:.2f} s/sample), samples' CPU {c1:.1f} s "
            f"(CPU share {c1 / t1:.2f} cores)",
            flush=True,
        )
        t2, c2 = time_generation(2, args.structures, settings, Path(tmp))
        print(
            f"2 workers: {t2:6.1f} s wall ({t2 / args.structures:.2f} s/sample), samples' CPU {c2:.1f} s "
            f"(CPU share {c2 / t2:.2f} cores)"
        )
    print(
        f"speed-up 2 vs 1 workers: {t1 / t2:.2f}x (target >= 1.6x); load average now {os.getloadavg()[0]:.1f}. "
        "On a shared machine the CPU share shows how much of the cores the workers got."
    )
    if args.paper:
        paper_exit_wave()


if __name__ == "__main__":
    main()
