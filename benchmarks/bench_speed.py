"""Speed on the machines users have, in one run: batch vs one process per series, old vs new CPU
inference, and the event loop's stalls.

Runs the three benchmarks one after the other, each in its own process (so one's imports and
threads do not weigh on the next), and prints their tables together:

1. ``benchmarks/bench_batch.py``: cost per series of the warm batch path (one process, networks
   loaded once) against one ``napari-hrtem predict`` process per series, for 1, 10 and 50 small
   series;
2. ``benchmarks/bench_cpu_inference.py``: each shipped network at 1024² and 4096², today's path
   (plain model, float32) against the default one (batch norm folded, MSD-net as matrix products,
   bfloat16 where the CPU computes it natively), with the ratio and the sites' agreement;
3. ``benchmarks/bench_responsiveness.py``: the longest stall of napari's event loop, idle, while
   predicting and while training (target 250 ms beyond idle; needs a display: run under Xvfb).

Each part measures its old and new paths side by side in the same process, so the ratios hold on a
busy machine (the CPU-time ratios best); the absolute times do not.

Run (from the repository root; ~20-30 min on 2 cores):
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_speed.py
    .venv/bin/python benchmarks/bench_speed.py --quick     # small sizes and counts, minutes
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parts(quick: bool) -> list[tuple[str, list[str]]]:
    py = sys.executable
    here = ROOT / "benchmarks"
    counts = ["1", "3"] if quick else ["1", "10", "50"]
    sizes = ["512"] if quick else ["1024", "4096"]
    return [
        ("batch vs one process per series", [py, str(here / "bench_batch.py"), "--counts", *counts]),
        ("old vs new CPU inference", [py, str(here / "bench_cpu_inference.py"), "--sizes", *sizes]),
        (
            "event-loop stalls (napari)",
            [py, "-m", "pytest", str(here / "bench_responsiveness.py"), "-s", "-q", "-p", "no:cacheprovider"]
            + (["-k", "1"] if quick else []),
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and counts (a check that it runs)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["batch", "inference", "stalls"])
    args = parser.parse_args()
    keys = ["batch", "inference", "stalls"]
    failed = 0
    for key, (title, command) in zip(keys, parts(args.quick), strict=True):
        if key in args.skip:
            continue
        print(f"\n=== {title} ===\n$ {' '.join(Path(c).name if c.startswith('/') else c for c in command)}", flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, check=False)
        print(f"({title}: {time.perf_counter() - t0:.0f} s, exit {done.returncode})", flush=True)
        failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
