"""Predict's Cancel: stop between networks only, or end the compute process (issue 15, item 6).

The Predict widget runs the networks in a persistent compute process
(:func:`napari_hrtem.plugin.widgets._common.in_process`). One network on a 1024² series takes
seconds and cannot be interrupted inside (one PyTorch call per tile, and a 1024² series is one
tile), so Cancel can either wait for the running network to end (the process stays warm) or end
the process at once (the next run starts a new one and loads PyTorch again). This script measures,
side by side in one run, on a 1024² focal series (a simulated 128² MoS2 series tiled 8×8) with
U-Net then U-Net++:

* ``wait``: stop requested 1 s into the first network, no process ended: seconds until the run ends;
* ``end``: the widget's way (:data:`napari_hrtem.plugin.widgets.predict.CANCEL_GRACE_S`, then the
  process ended): seconds until the run ends;
* the start of the next run: seconds from Run to the first network running, in a warm process and
  in a new one (after ``end``).

Run:  python benchmarks/bench_predict_cancel.py [--size 1024]

Measured 2026-12-02 on the project's shared machine (2 CPU cores, no GPU, other jobs running,
OMP_NUM_THREADS=1):

====== ========================= ========================= ==================================
size   wait for the network      end the process           next run: first network running
====== ========================= ========================= ==================================
1024²  1.8 s after Cancel        1.3 s after Cancel        warm 0.0 s, new process 3.2 s
2048²  9.5 s after Cancel        1.2 s after Cancel        warm 0.1 s, new process 2.6 s
====== ========================= ========================= ==================================

So Cancel waits :data:`~napari_hrtem.plugin.widgets.predict.CANCEL_GRACE_S` (1 s) for the run to
stop between networks, then ends the process: a few seconds at most whatever the size, and ~3 s
more at the next run only when the process had to be ended.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np


def series(size: int):
    from napari_hrtem.io.focal_series import FocalSeries
    from napari_hrtem.simulation.imaging import MicroscopeParameters, exit_wave, focal_series
    from napari_hrtem.simulation.structures import make_mos2_sample

    sample = make_mos2_sample(128 * 0.22, graphene_layers=1, rotation=12.0, seed=7)
    wave = exit_wave(sample, (128, 128), 0.22, phonon_configs=2, seed=1)
    images = focal_series(wave, MicroscopeParameters(defocus=-50.0, dose=3e4), (128, 128), rng=np.random.default_rng(0))
    reps = max(1, size // 128)
    return FocalSeries(np.tile(images, (1, reps, reps)), 0.22, None, None, ["bench"], {})


def run(networks, images, grace: float | None, stop_after: float | None):
    """``(seconds to the first running network, seconds from stop to the end, cancelled)``."""
    from napari_hrtem.plugin.widgets import predict

    stop = threading.Event()
    saved = predict.CANCEL_GRACE_S
    predict.CANCEL_GRACE_S = 1e9 if grace is None else grace
    t0 = time.perf_counter()
    first = stopped = None
    steps = predict.predict_layers_in_process(networks, images, 0.22, None, 0.5, None, False, True, False, stop)
    try:
        while True:
            try:
                event = next(steps)
            except StopIteration as end:
                result = end.value
                break
            if event.info.get("running") and first is None:
                first = time.perf_counter() - t0
            if stop_after is not None and first is not None and stopped is None:
                time.sleep(stop_after)
                stop.set()
                stopped = time.perf_counter()
    finally:
        predict.CANCEL_GRACE_S = saved
    return first, None if stopped is None else time.perf_counter() - stopped, result is None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    from napari_hrtem.models.registry import load_network

    networks = [load_network("unet"), load_network("unetpp")]
    images = series(args.size)
    small = series(128)
    run(networks[:1], small, None, None)  # start the compute process, load PyTorch
    warm, _, _ = run(networks[:1], small, None, None)
    _, wait_s, wait_cancelled = run(networks, images, None, 1.0)
    _, end_s, end_cancelled = run(networks, images, 1.0, 1.0)
    cold, _, _ = run(networks[:1], small, None, None)  # a new compute process
    print(f"{args.size}² series, unet + unetpp, stop requested 1 s into unet:")
    print(f"  wait for the network: ended {wait_s:.1f} s after the stop (cancelled: {wait_cancelled})")
    print(f"  end the process:      ended {end_s:.1f} s after the stop (cancelled: {end_cancelled})")
    print(f"  next run, first network running after: warm process {warm:.1f} s, new process {cold:.1f} s")
    print(f"  ratio wait / end: {wait_s / max(end_s, 1e-3):.1f}")


if __name__ == "__main__":
    main()
