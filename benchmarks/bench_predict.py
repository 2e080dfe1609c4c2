"""Time `predict`, per network and for a whole large series, against the networks' bare forward passes.

Prints, side by side in one run: the whole prediction (resample + support filter + local
normalization + network + site finding) and the bare forward pass of the network over the same
pixels, and their ratio (the overhead of everything around the network).

Run:  python benchmarks/bench_predict.py                 # 256x256 simulated and the 1024x1024 real series
      python benchmarks/bench_predict.py --size 4096     # issue 5: a 4096x4096 3-image series, all networks
      python benchmarks/bench_predict.py --size 8192 --networks unet --no-bare   # issue 7: peak memory only
      python benchmarks/bench_predict.py --size 8192 --stand-in   # memory of all but the network (minutes)
      python benchmarks/bench_predict.py --size 8192 --memory     # issue 7: peak RSS per phase, real networks
      python benchmarks/bench_predict.py --untiled 512 1024 1536  # peak RSS of one untiled forward pass

For ``--size`` a 256x256 simulated series of MoS2 on two graphene layers (0.22 Å/px, so it is
resampled to the networks' 0.2246 Å/px) is repeated to the size asked. ``predict`` is
:func:`napari_hrtem.analysis.inference.predict_all` (preprocessing once for the networks that share it,
tiled inference, site finding); the bare forward passes cover the same preprocessed pixels once,
in non-overlapping tiles no larger than the tile budget. Peak memory is the process' peak
resident set size (``ru_maxrss``) measured right after ``predict``. Times are given as wall time
and as the process' CPU time (``time.process_time``, one torch thread): on a shared machine the
CPU time ratio is the stable one.
"""

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

from napari_hrtem.analysis.filters import preprocess, resample
from napari_hrtem.analysis.inference import (
    DEFAULT_TILE,
    find_sites,
    predict_all,
    predict_probabilities,
    predict_sites,
    prepare_series,
    tile_layout,
)
from napari_hrtem.io.focal_series import read_focal_series
from napari_hrtem.models.registry import available_networks
from napari_hrtem.simulation.imaging import MicroscopeParameters, simulate_focal_series
from napari_hrtem.simulation.structures import make_mos2_sample

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: kB


def series():
    sample = make_mos2_sample(256 * 0.22, graphene_layers=2, seed=0)
    images, _ = simulate_focal_series(sample, (256, 256), 0.22, MicroscopeParameters(), seed=0)
    yield "simulated 256x256", images, 0.22
    files = [REAL / f"focal_series_img0{i}.dm3" for i in (7, 8, 9)]
    if all(f.exists() for f in files):
        s = read_focal_series(files)
        yield "real DM3 1024x1024", s.images, s.sampling


def small(tile):
    for label, images, sampling in series():
        for net in available_networks().values():
            model = net.load("cpu")
            t0 = time.perf_counter()
            sites, _ = predict_sites(net, images, sampling, model=model, tile=tile)
            total = time.perf_counter() - t0
            x = preprocess(resample(images, sampling, net.card.sampling), net.card.sampling)
            t0 = time.perf_counter()
            bare_forward(model, x, tile)
            bare = time.perf_counter() - t0
            print(
                f"{label:>20} {net.name:>8}: predict {total:6.2f} s, network alone {bare:6.2f} s, "
                f"ratio {total / bare:4.2f}, {len(sites)} sites"
            )


def bare_forward(model, x, tile):
    """The network's forward pass over every pixel once: non-overlapping tiles of at most ``tile`` px."""
    div = getattr(model, "divisor", 1)
    _, h, w = x.shape
    with torch.no_grad():
        for y0, y1 in tile_layout(h, tile, 0, div):
            for x0, x1 in tile_layout(w, tile, 0, div):
                patch = x[:, y0:y1, x0:x1]
                patch = np.pad(
                    patch, ((0, 0), (0, (-patch.shape[1]) % div), (0, (-patch.shape[2]) % div)), mode="reflect"
                )
                model(torch.from_numpy(np.ascontiguousarray(patch))[None])


def large(size, names, tile, bare):
    sample = make_mos2_sample(256 * 0.22, graphene_layers=2, rotation=10.0, seed=0, flake_fraction=1.4)
    tile_images, _ = simulate_focal_series(sample, (256, 256), 0.22, MicroscopeParameters(), seed=0, phonon_configs=1)
    reps = int(np.ceil(size / 256))
    images = np.ascontiguousarray(np.tile(tile_images, (1, reps, reps))[:, :size, :size])
    del tile_images
    networks = [net for name, net in available_networks().items() if not names or name in names]
    print(
        f"{size}x{size} series of {len(images)} images at 0.22 Å/px; networks {[n.name for n in networks]}; "
        f"tile {tile} px; peak RSS before predict {peak_rss_gb():.2f} GB",
        flush=True,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    for event in predict_all(networks, images, 0.22, tile=tile):
        if "results" not in event:
            print(f"  {event['network']} done at {time.perf_counter() - t0:.1f} s", flush=True)
    total, cpu_total = time.perf_counter() - t0, time.process_time() - c0
    results = event["results"]
    print(
        f"predict: {total:.1f} s wall, {cpu_total:.1f} s CPU, peak RSS {peak_rss_gb():.2f} GB, sites "
        f"{ {k: len(v) for k, v in results.items()} }, consensus {len(event['consensus'])}",
        flush=True,
    )
    if not bare:
        return
    t0 = time.perf_counter()
    x = prepare_series(networks[0].card, images, 0.22)
    prep = time.perf_counter() - t0
    print(f"  preprocessing (once, shared): {prep:.1f} s for {x.shape}", flush=True)
    bare_total = cpu_bare = 0.0
    for net in networks:
        model = net.load("cpu")
        t0, c0 = time.perf_counter(), time.process_time()
        bare_forward(model, x, tile)
        seconds = time.perf_counter() - t0
        bare_total += seconds
        cpu_bare += time.process_time() - c0
        t0 = time.perf_counter()
        probabilities = predict_probabilities(model, x, tile=tile)
        tiled = time.perf_counter() - t0
        t0 = time.perf_counter()
        find_sites(probabilities, net.card.sampling)
        finding = time.perf_counter() - t0
        print(
            f"  {net.name:>8}: bare forward {seconds:.1f} s wall; tiled with margins {tiled:.1f} s "
            f"({tiled / seconds:.2f}x); find_sites {finding:.1f} s",
            flush=True,
        )
    print(
        f"RATIO predict / sum of bare forward passes, wall: {total:.1f} / {bare_total:.1f} = "
        f"{total / bare_total:.2f}; CPU time (insensitive to other processes' load): {cpu_total:.1f} / "
        f"{cpu_bare:.1f} = {cpu_total / cpu_bare:.2f} (target <= 1.3)",
        flush=True,
    )


def stand_in(size, tile):
    """Memory of everything but a network's activations on a large series (issue 7).

    Preprocessing (resampling, support filter, local normalization) with the shipped networks'
    card, tiled inference with a tiny untrained MSD-net (1 layer; its activations are negligible,
    a real network's are bounded by the tile), and site finding on the probability maps.
    """
    from napari_hrtem.models.registry import build_model

    sample = make_mos2_sample(256 * 0.22, graphene_layers=2, rotation=10.0, seed=0, flake_fraction=1.4)
    tile_images, _ = simulate_focal_series(sample, (256, 256), 0.22, MicroscopeParameters(), seed=0, phonon_configs=1)
    reps = int(np.ceil(size / 256))
    images = np.ascontiguousarray(np.tile(tile_images, (1, reps, reps))[:, :size, :size])
    card = next(iter(available_networks().values())).card
    print(f"{size}x{size} series, stand-in network, tile {tile} px; peak RSS before {peak_rss_gb():.2f} GB", flush=True)
    t0 = time.perf_counter()
    x = prepare_series(card, images, 0.22)
    print(f"  preprocessing {time.perf_counter() - t0:.1f} s, peak RSS {peak_rss_gb():.2f} GB", flush=True)
    model = build_model("msdnet", width=1, depth=1).eval()
    t0 = time.perf_counter()
    probabilities = predict_probabilities(model, x, tile=tile, margin=128)
    print(f"  tiled inference {time.perf_counter() - t0:.1f} s, peak RSS {peak_rss_gb():.2f} GB", flush=True)
    t0 = time.perf_counter()
    sites = find_sites(probabilities, card.sampling, threshold=0.0)
    print(
        f"  find_sites {time.perf_counter() - t0:.1f} s ({len(sites)} sites), peak RSS {peak_rss_gb():.2f} GB",
        flush=True,
    )


class RssSampler:
    """Resident set size sampled every ``interval`` s in a thread (``/proc/self/statm``); ``take()``
    returns the largest value (GB) since the previous ``take()``. Torch and NumPy release the GIL in
    their heavy loops, so the thread keeps sampling during a forward pass."""

    def __init__(self, interval=0.05):
        import os
        import threading

        self._page = os.sysconf("SC_PAGE_SIZE")
        self._peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def rss(self):
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def _run(self, interval):
        while not self._stop.wait(interval):
            self._peak = max(self._peak, self.rss())

    def take(self):
        peak, self._peak = max(self._peak, self.rss()), self.rss()
        return peak / 1024**3

    def stop(self):
        self._stop.set()
        self._thread.join()


def memory(size, names, tile):
    """Peak RSS of each phase of ``predict_all`` on a large series with the shipped networks (issue 7).

    Same series and pipeline as ``--size`` (what ``napari-hrtem predict`` does), with an RSS sampler:
    peak while building the series, while each network runs (preprocessing included for the first),
    and in the consensus; then the process' peak (``ru_maxrss``)."""
    sampler = RssSampler()
    sample = make_mos2_sample(256 * 0.22, graphene_layers=2, rotation=10.0, seed=0, flake_fraction=1.4)
    tile_images, _ = simulate_focal_series(sample, (256, 256), 0.22, MicroscopeParameters(), seed=0, phonon_configs=1)
    reps = int(np.ceil(size / 256))
    images = np.ascontiguousarray(np.tile(tile_images, (1, reps, reps))[:, :size, :size])
    del tile_images, sample
    networks = [net for name, net in available_networks().items() if not names or name in names]
    print(
        f"{size}x{size} series of {len(images)} images at 0.22 Å/px ({images.nbytes / 1024**3:.2f} GB float32); "
        f"networks {[n.name for n in networks]}; tile {tile} px; peak RSS while simulating and building the "
        f"series {sampler.take():.2f} GB",
        flush=True,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    for event in predict_all(networks, images, 0.22, tile=tile):
        if "results" not in event:
            print(
                f"  {event['network']:>8} done at {time.perf_counter() - t0:.0f} s wall, "
                f"{time.process_time() - c0:.0f} s CPU; peak RSS during it {sampler.take():.2f} GB",
                flush=True,
            )
    results = event["results"]
    print(f"  consensus: peak RSS {sampler.take():.2f} GB", flush=True)
    print(
        f"predict_all: {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU; "
        f"process peak RSS (ru_maxrss) {peak_rss_gb():.2f} GB; sites { {k: len(v) for k, v in results.items()} }, "
        f"consensus {len(event['consensus'])}",
        flush=True,
    )
    sampler.stop()


def untiled(sizes, names):
    """Peak RSS of one untiled forward pass (the whole series as one tile) per network at small sizes,
    each in a fresh process (freed memory is not given back to the system, so a second pass in the same
    process would hide its own peak); in bytes per pixel, to estimate what an untiled 8192x8192 run needs."""
    import subprocess
    import sys

    networks = [name for name in available_networks() if not names or name in names]
    for name in networks:
        for size in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--untiled-one", name, str(size)], capture_output=True, text=True, check=True
            )
            print(out.stdout.strip(), flush=True)


def untiled_one(name, size):
    net = available_networks()[name]
    model = net.load("cpu")
    x = np.random.default_rng(0).standard_normal((net.card.n_images, size, size)).astype(np.float32)
    sampler = RssSampler(0.01)
    base = sampler.take()
    with torch.no_grad():
        model(torch.from_numpy(x)[None])
    peak = sampler.take()
    sampler.stop()
    extra = (peak - base) * 1024**3
    print(
        f"  {name:>8} untiled {size}x{size}: peak RSS {peak:.2f} GB, {extra / 1024**3:.2f} GB above the "
        f"{base:.2f} GB before the forward pass, {extra / size**2:.0f} B/px -> "
        f"{extra / size**2 * 8192**2 / 1024**3:.0f} GB of activations for 8192x8192"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, help="edge of a large square series (e.g. 4096 or 8192)")
    parser.add_argument("--networks", nargs="*", help="network names (default: all)")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile budget, px")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare forward passes (memory only)")
    parser.add_argument(
        "--stand-in",
        action="store_true",
        help="memory of preprocessing, tiling and site finding with a tiny stand-in network",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="with --size: peak RSS per phase (series, each network, consensus), no bare passes",
    )
    parser.add_argument(
        "--untiled",
        nargs="*",
        type=int,
        help="sizes: peak RSS of one untiled forward pass per network (extrapolated to 8192)",
    )
    parser.add_argument("--untiled-one", nargs=2, metavar=("NETWORK", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.untiled_one:
        return untiled_one(args.untiled_one[0], int(args.untiled_one[1]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu", flush=True)
    if args.untiled:
        untiled(args.untiled, args.networks)
    elif args.size and args.memory:
        memory(args.size, args.networks, args.tile)
    elif args.size and args.stand_in:
        stand_in(args.size, args.tile)
    elif args.size:
        large(args.size, args.networks, args.tile, not args.no_bare)
    else:
        small(args.tile)


if __name__ == "__main__":
    main()
