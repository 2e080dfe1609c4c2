"""Time `predict` per network on a 256x256 simulated series and the 1024x1024 real DM3 series.

Prints, side by side in one run: the whole prediction (resample + support filter + local
normalization + network + site finding) and the bare forward pass of the network over the same
pixels, and their ratio (the overhead of everything around the network).

Run:  .venv/bin/python benchmarks/bench_predict.py
"""

import time
from pathlib import Path

import torch

from napari_hrtem.filters import preprocess, resample
from napari_hrtem.imaging import MicroscopeParameters, simulate_focal_series
from napari_hrtem.inference import predict_probabilities, predict_sites
from napari_hrtem.io import read_focal_series
from napari_hrtem.models.registry import available_networks
from napari_hrtem.structures import make_mos2_sample

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def series():
    sample = make_mos2_sample(256 * 0.22, graphene_layers=2, seed=0)
    images, _ = simulate_focal_series(sample, (256, 256), 0.22, MicroscopeParameters(), seed=0)
    yield "simulated 256x256", images, 0.22
    files = [REAL / f"focal_series_img0{i}.dm3" for i in (7, 8, 9)]
    if all(f.exists() for f in files):
        s = read_focal_series(files)
        yield "real DM3 1024x1024", s.images, s.sampling


def main():
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    for label, images, sampling in series():
        for net in available_networks().values():
            model = net.load("cpu")
            t0 = time.perf_counter()
            sites, _ = predict_sites(net, images, sampling, model=model)
            total = time.perf_counter() - t0
            x = preprocess(resample(images, sampling, net.card["sampling"]), net.card["sampling"])
            t0 = time.perf_counter()
            predict_probabilities(model, x)
            bare = time.perf_counter() - t0
            print(f"{label:>20} {net.name:>8}: predict {total:6.2f} s, network alone {bare:6.2f} s, "
                  f"ratio {total / bare:4.2f}, {len(sites)} sites")


if __name__ == "__main__":
    main()
