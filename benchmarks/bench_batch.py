"""Cost per focal series: the warm batch path against one ``napari-hrtem predict`` process per series.

Issue 16: a user who predicts a folder of 50 series with one process per series pays Python's,
torch's and the networks' start-up 50 times. ``napari-hrtem predict --batch`` runs them all in one
process, each network loaded once. This script makes N small simulated series (N = 1, 10, 50 by
default; MoS2 on one graphene layer, 128×128 px at 0.22 Å/px, 3 frames, each with its own dose
noise, written as .npz with sampling, beam energy and defocus) and, side by side in one run, for
each N:

* batch: one ``napari-hrtem predict --batch FOLDER --out OUT`` process (the whole process timed:
  start, imports, networks loaded once, every series, summary.csv);
* per process: ``napari-hrtem predict FILE --out OUT/NAME`` once per series (each process timed
  whole, summed);

and prints the wall time and the CPU time (user + system of the child processes, ``RUSAGE_CHILDREN``)
per series of each, and their ratio. It also checks that both write the same consensus.csv.

Run:  python benchmarks/bench_batch.py                        # N = 1, 10, 50; unet
      python benchmarks/bench_batch.py --counts 1 10 --networks unet unetpp msdnet
      python benchmarks/bench_batch.py --size 256               # 256×256 series

Measured 2026-12-02 on the project's shared machine (2 CPU cores, no GPU, other jobs running: load
average 1.5-3.7, OMP_NUM_THREADS=1), ``python benchmarks/bench_batch.py`` (unet, 128×128), per series,
wall / CPU (docs/measurements/performance.md, "Many focal series: the batch path")::

    N    batch            one process per series   ratio wall / CPU
    1    5.67 s / 3.04 s  5.91 s / 3.13 s           1.0x / 1.0x
    10   0.46 s / 0.37 s  7.65 s / 3.37 s          16.7x / 9.0x
    50   0.31 s / 0.16 s  6.26 s / 3.26 s          20.0x / 20.1x

Both paths wrote the same consensus.csv for every series. Three networks on 256×256 series
(``--counts 1 10 --networks unet unetpp msdnet --size 256``, load average 2.8-3.1): N = 1, batch
6.26 s / 4.84 s against 10.12 s / 5.18 s (1.6x / 1.1x); N = 10, 2.41 s / 0.96 s against 10.69 s /
4.82 s (4.4x / 5.0x).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COMMAND = [sys.executable, "-m", "napari_hrtem.cli", "predict"]


def make_series(folder: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    """``count`` focal series of one simulated MoS2-on-graphene exit wave, each with its own noise."""
    from napari_hrtem.simulation.imaging import MicroscopeParameters, exit_wave, focal_series
    from napari_hrtem.simulation.structures import make_mos2_sample

    sample = make_mos2_sample(size * 0.22, graphene_layers=1, seed=seed)
    wave = exit_wave(sample, (size, size), 0.22, phonon_configs=1, seed=seed)
    params = MicroscopeParameters(dose=3e4)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        images = focal_series(wave, params, (size, size), rng=np.random.default_rng(seed + i))
        path = folder / f"series{i:03d}.npz"
        np.savez(path, images=images, sampling=0.22, energy=params.energy, defocus=np.array(params.defoci))
        files.append(path)
    return files


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 50], help="numbers of series")
    parser.add_argument("--networks", nargs="+", default=["unet"], help="networks to run (default unet)")
    parser.add_argument("--size", type=int, default=128, help="image edge, px")
    parser.add_argument("--keep", help="a folder to keep the series and outputs in (default: a temporary one)")
    args = parser.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_batch_"))
    print(
        f"{os.cpu_count()} CPU(s), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"load average {os.getloadavg()[0]:.1f}; networks {' '.join(args.networks)}; "
        f"{args.size}x{args.size} px, 3 frames",
        flush=True,
    )
    files = make_series(root / "series" / "all", max(args.counts), args.size)
    rows = []
    for count in args.counts:
        folder = root / "series" / f"n{count}"
        folder.mkdir(parents=True, exist_ok=True)
        for f in files[:count]:
            target = folder / f.name
            if not target.exists():
                os.link(f, target)
        batch_out, single_out = root / "out" / f"batch{count}", root / "out" / f"single{count}"
        for out in (batch_out, single_out):
            shutil.rmtree(out, ignore_errors=True)
        load = os.getloadavg()[0]
        b_wall, b_cpu = timed([*COMMAND, "--batch", str(folder), "--out", str(batch_out), "--networks", *args.networks])
        s_wall = s_cpu = 0.0
        for f in files[:count]:
            w, c = timed(
                [*COMMAND, str(folder / f.name), "--out", str(single_out / f.stem), "--networks", *args.networks]
            )
            s_wall, s_cpu = s_wall + w, s_cpu + c
        same = all(
            (batch_out / f.stem / "consensus.csv").read_bytes() == (single_out / f.stem / "consensus.csv").read_bytes()
            for f in files[:count]
        )
        rows.append((count, b_wall / count, b_cpu / count, s_wall / count, s_cpu / count, same, load))
        print(
            f"N={count:3d}: batch {b_wall / count:6.2f} s/series wall, {b_cpu / count:6.2f} s CPU | one process "
            f"per series {s_wall / count:6.2f} s wall, {s_cpu / count:6.2f} s CPU | ratio wall "
            f"{s_wall / b_wall:5.1f}x, CPU {s_cpu / b_cpu:5.1f}x | same consensus.csv: {same} | load {load:.1f}",
            flush=True,
        )
    print(
        "\n| series | batch: wall / CPU per series | one process per series: wall / CPU per series | ratio wall / CPU |"
    )
    print("| --- | --- | --- | --- |")
    for count, bw, bc, sw, sc, _, _ in rows:
        print(f"| {count} | {bw:.2f} s / {bc:.2f} s | {sw:.2f} s / {sc:.2f} s | {sw / bw:.1f}× / {sc / bc:.1f}× |")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
