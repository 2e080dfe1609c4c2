"""Cost of reading HDF5-based files (.emd) in a child process with a time limit (issue 7).

A damaged HDF5 file can make h5py's C code loop forever, so ``napari_hrtem.io.focal_series.read_image_file``
reads .emd files in a fresh Python process stopped after ``timeout`` s. This prints, side by side in
one run, the time per read through the child process and directly in this process (after a first
read, so the imports are warm: the case of a napari session), and the difference (the overhead:
starting Python, importing NumPy, rosettasciio and h5py, passing the images back through a .npy).

Run:  python benchmarks/bench_read_isolated.py [--repeats 5] [FILE.emd ...]
Default files: the Velox and Berkeley EMD files in ../shared/realdata.
"""

import argparse
import statistics
import time
from pathlib import Path

from napari_hrtem.io.focal_series import read_image_file

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def timed(path, timeout, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        series = read_image_file(path, timeout=timeout)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), series


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--realdata", type=Path, default=REAL)
    args = parser.parse_args()
    files = args.files or [args.realdata / "fei_example_tem_stack.emd", args.realdata / "Acquisition_18.emd"]
    for path in files:
        read_image_file(path, timeout=float("inf"))  # warm imports
        direct, series = timed(path, float("inf"), args.repeats)
        child, _ = timed(path, 60.0, args.repeats)
        print(
            f"{path.name} ({path.stat().st_size / 1e6:.2f} MB, images {series.images.shape}): child process "
            f"{child:.3f} s, in this process {direct:.3f} s, overhead {child - direct:.3f} s per read "
            f"(median of {args.repeats})",
            flush=True,
        )


if __name__ == "__main__":
    main()
