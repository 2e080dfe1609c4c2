"""The GPU path on a real GPU, in under 5 minutes (issue 16 item 3).

On one CUDA device:

1. every shipped network on a 4096² simulated focal series (``--size``), with the plain network
   (today's path) and the inference copy (:func:`napari_hrtem.models.fast.inference_model`) in
   float32 and in ``auto`` precision (bfloat16 on a GPU with native bfloat16): time and throughput
   (MP/s of the preprocessed series, ``torch.cuda.synchronize`` before each clock reading);
2. their sites against the CPU result (float32 inference copy on the CPU, all CPU threads) with the
   tolerance logic of :func:`napari_hrtem.analysis.inference.agreement_within`
   (:data:`napari_hrtem.models.fast.BF16_TOLERANCE`: cuDNN's TF32 convolutions and bfloat16 both
   round);
3. mixed-precision training steps (the trainer's own step: float16 autocast and gradient scaling on
   CUDA) against float32 steps, per architecture: s/step and MP/s;
4. a real CUDA out-of-memory: ``torch.cuda.set_per_process_memory_fraction`` caps the process to
   ``--oom-cap-gb`` (default 1 GB) and the MSD-net runs on the series with one tile as large as the
   series; the tile halving of :func:`~napari_hrtem.analysis.inference.predict_probabilities`
   must recover (its warning is seen) with the result of half-size tiles without the cap.

Without CUDA it prints ``skipped: no CUDA device`` and exits 0. ``--cpu-smoke`` runs the same code
paths on the CPU at a small size (128², 2 training steps of 2x64², the out-of-memory error raised by
a ceiling on the window size instead of the allocator, with a small random MSD-net) so that ``tests/test_gpu_check.py`` runs
it in seconds. Exit status 1 if a check fails (sites out of tolerance, no recovery).

Run:  python benchmarks/gpu_check.py                 # on a machine with a GPU
      python benchmarks/gpu_check.py --size 2048 --train-steps 10
      python benchmarks/gpu_check.py --cpu-smoke     # the code paths on the CPU, seconds

Measured: see docs/measurements/cpu-inference.md (GPU section).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np


def simulated_series(size: int) -> tuple[np.ndarray, float]:
    """A ``(3, size, size)`` float32 focal series at 0.22 Å/px: one simulated tile (256², or the
    size when smaller) of MoS2 on two graphene layers, repeated."""
    from napari_hrtem.simulation.imaging import MicroscopeParameters, simulate_focal_series
    from napari_hrtem.simulation.structures import make_mos2_sample

    edge = min(256, size)
    sample = make_mos2_sample(edge * 0.22, graphene_layers=2, rotation=10.0, seed=0, flake_fraction=1.4)
    tile, _ = simulate_focal_series(sample, (edge, edge), 0.22, MicroscopeParameters(), seed=0, phonon_configs=1)
    reps = int(np.ceil(size / edge))
    return np.ascontiguousarray(np.tile(tile, (1, reps, reps))[:, :size, :size]), 0.22


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, function, *args, **kwargs):
    """``(result, wall seconds)`` with the device synchronized before each clock reading."""
    synchronize(device)
    t0 = time.perf_counter()
    result = function(*args, **kwargs)
    synchronize(device)
    return result, time.perf_counter() - t0


def inference(nets, x, device, tile, cpu_sites) -> tuple[list[str], bool]:
    """Part 1 and 2: plain and inference copies on ``device``, sites against the CPU's."""
    import torch

    from napari_hrtem.analysis.inference import agreement_within, find_sites, network_threshold, predict_probabilities
    from napari_hrtem.models.fast import inference_model

    lines, all_ok = [], True
    mp = x.shape[1] * x.shape[2] / 1e6
    for net in nets:
        plain = net.load(device)
        threshold = network_threshold(net.card)
        with torch.no_grad():
            plain(torch.zeros((1, net.card.n_images, 64, 64), device=device))  # kernels, cuDNN autotuning
        _, old = timed(device, predict_probabilities, plain, x, tile=tile)
        row = f"{net.name:>8} plain float32 {old:7.2f} s {mp / old:8.1f} MP/s"
        for precision in ("float32", "auto"):
            fast = inference_model(plain, precision)
            with torch.no_grad():
                fast(torch.zeros((1, net.card.n_images, 64, 64), device=device))
            prob, seconds = timed(device, predict_probabilities, fast, x, tile=tile)
            sites = find_sites(prob, net.card.sampling, threshold=threshold)
            ok, fig = agreement_within(cpu_sites[net.name], sites)
            all_ok &= ok
            row += (
                f" | {fast.precision:>8} {seconds:7.2f} s {mp / seconds:8.1f} MP/s ({old / seconds:4.1f}x), sites vs CPU "
                f"{fig['n_reference']}/{fig['n_other']} F1@0.1 {fig['f1_fine']:.4f} F1@0.5 {fig['f1']:.4f} class "
                f"{fig['same_class']:.4f} shift {fig['max_shift']:.3f} Å {'ok' if ok else 'OUT OF TOLERANCE'}"
            )
            del prob, fast
        print(row, flush=True)
        lines.append(row)
        del plain
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return lines, all_ok


def training_steps(device, steps: int, batch: int, crop: int) -> list[str]:
    """Part 3: the trainer's step (``_Run.backward`` + ``update``) with and without mixed precision."""
    import torch

    from napari_hrtem.models.card import ARCHITECTURES
    from napari_hrtem.training.trainer import TrainingSettings, _Run

    lines = []
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch, 3, crop, crop)).astype(np.float32)).to(device)
    y = torch.from_numpy(rng.integers(0, 4, (batch, crop, crop))).to(device)
    mp = batch * crop * crop / 1e6
    for architecture in ARCHITECTURES:
        row = f"{architecture:>8} batch {batch}x{crop}²:"
        for amp in (True, False) if device.type == "cuda" else (False,):
            settings = TrainingSettings(steps=steps + 2, batch_size=batch, amp=amp, device=str(device))
            run = _Run(architecture, None, 3, settings, device, 1, None, None)
            run.model.train()
            for _ in range(2):  # warm-up (cuDNN autotuning, allocator)
                value, error = run.backward(x, y)
                assert error is None, error
                run.update(value)
            synchronize(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                value, error = run.backward(x, y)
                assert error is None, error
                run.update(value)
            synchronize(device)
            seconds = (time.perf_counter() - t0) / steps
            label = "mixed precision (float16 autocast)" if amp else "float32"
            row += f" {label} {seconds * 1e3:7.1f} ms/step {mp / seconds:7.1f} MP/s;"
            del run
        print(row, flush=True)
        lines.append(row)
    return lines


def out_of_memory(net, x, device, cap_gb: float, smoke: bool) -> tuple[str, bool]:
    """Part 4: a real CUDA out-of-memory error (a memory cap) and the tile halving recovering.

    The MSD-net's inference copy (float32) runs with one tile as large as the series; the result
    must equal the one computed in half-size tiles without the cap (probabilities to 1e-3, the
    same sites). ``smoke``: no allocator to cap on the CPU, so the same error is raised by a
    ceiling on the window size, and a small random MSD-net (receptive margin ~25 px, so that a
    128² series can be split) stands in for the shipped one (margin 127 px).
    """
    import torch

    from napari_hrtem.analysis.inference import agreement_within, find_sites, predict_probabilities
    from napari_hrtem.models.fast import inference_model
    from napari_hrtem.models.registry import build_model

    if smoke:
        torch.manual_seed(0)
        plain = build_model("msdnet", width=2, depth=6, max_dilation=6).eval()
        label = "random 6-layer MSD-net"
    else:
        plain, label = net.load(device), net.name
    model = inference_model(plain, "float32")
    big = max(x.shape[1:])
    expected = predict_probabilities(model, x, tile=big // 2)
    forward = None
    if smoke:
        limit = (big * 3 // 4) ** 2  # the whole series fails, half-size tiles fit

        def forward(m, batch):
            if batch.shape[-2] * batch.shape[-1] > limit:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated by --cpu-smoke)")
            return m(batch)

    else:
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gb * 1e9 / total), device)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            prob, seconds = timed(device, predict_probabilities, model, x, tile=big, forward=forward)
    finally:
        if not smoke:
            torch.cuda.set_per_process_memory_fraction(1.0, device)
            torch.cuda.empty_cache()
    halved = [str(w.message) for w in seen if "halved" in str(w.message)]
    diff = float(np.abs(prob - expected).max())
    sampling = float(net.card.sampling)
    a, b = find_sites(expected, sampling, threshold=0.5), find_sites(prob, sampling, threshold=0.5)
    same, fig = agreement_within(a, b, {"f1": 1.0, "f1_fine": 1.0, "max_shift": 0.01})
    ok = bool(halved) and diff < 1e-3 and same
    where = "simulated memory ceiling" if smoke else f"GPU memory capped at {cap_gb:g} GB"
    line = (
        f"out of memory ({where}), {label} with one {big} px tile: "
        + ("; ".join(halved) if halved else "NO out-of-memory warning")
        + f"; recovered in {seconds:.2f} s: max |dp| {diff:.1e} against half-size tiles without the cap, "
        f"sites {fig['n_other']} vs {fig['n_reference']}: {'ok' if ok else 'FAILED'}"
    )
    print(line, flush=True)
    return line, ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, help="series edge, px (default 4096; 128 with --cpu-smoke)")
    parser.add_argument("--cpu-smoke", action="store_true", help="the same code paths on the CPU, small and fast")
    parser.add_argument("--networks", nargs="*", help="network names (default: the shipped ones)")
    parser.add_argument("--tile", type=int, default=None, help="tile budget, px (default: the library's)")
    parser.add_argument("--train-steps", type=int, default=None, help="timed training steps (default 10; 2 smoke)")
    parser.add_argument("--train-batch", type=int, default=None, help="training batch (default 8; 2 smoke)")
    parser.add_argument("--train-crop", type=int, default=None, help="training series edge, px (256; 64 smoke)")
    parser.add_argument("--oom-cap-gb", type=float, default=1.0, help="GPU memory cap of the out-of-memory check")
    args = parser.parse_args(argv)

    import torch

    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print(
            "skipped: no CUDA device (torch.cuda.is_available() is False); --cpu-smoke runs the code paths on the CPU"
        )
        return 0
    from napari_hrtem.analysis.inference import DEFAULT_TILE, find_sites, network_threshold, prepare_series
    from napari_hrtem.models.fast import inference_model
    from napari_hrtem.models.registry import WEIGHTS_DIR, available_networks

    t_start = time.perf_counter()
    device = torch.device("cpu" if smoke else "cuda")
    size = args.size or (128 if smoke else 4096)
    tile = args.tile or DEFAULT_TILE
    name = "CPU (smoke run)" if smoke else torch.cuda.get_device_name(device)
    print(f"torch {torch.__version__} on {name}; series {size}², tile {tile} px", flush=True)
    nets = [
        n
        for key, n in available_networks().items()
        if (key in args.networks if args.networks else n.weights.parent == WEIGHTS_DIR)
    ]
    images, sampling = simulated_series(size)
    t0 = time.perf_counter()
    x = prepare_series(nets[0].card, images, sampling)
    print(f"preprocessed on the CPU in {time.perf_counter() - t0:.1f} s -> {x.shape}", flush=True)

    t0 = time.perf_counter()
    cpu_sites = {}
    from napari_hrtem.analysis.inference import predict_probabilities

    for net in nets:  # the CPU reference: float32 inference copies, all CPU threads
        prob = predict_probabilities(inference_model(net.load("cpu"), "float32"), x, tile=tile)
        cpu_sites[net.name] = find_sites(prob, net.card.sampling, threshold=network_threshold(net.card))
        del prob
    print(
        f"CPU reference (float32, {torch.get_num_threads()} threads): {time.perf_counter() - t0:.1f} s, sites "
        f"{ {k: len(v) for k, v in cpu_sites.items()} }",
        flush=True,
    )
    print("\n1-2. inference on the device (plain network, then the inference copy in float32 and auto):")
    _, inference_ok = inference(nets, x, device, tile, cpu_sites)
    print("\n3. training steps (the trainer's step: backward, optimizer, schedule):")
    training_steps(
        device,
        args.train_steps or (2 if smoke else 10),
        args.train_batch or (2 if smoke else 8),
        args.train_crop or (64 if smoke else 256),
    )
    print("\n4. out of memory:")
    msd = next((n for n in nets if n.card.architecture == "msdnet"), nets[0])
    _, oom_ok = out_of_memory(msd, x, device, args.oom_cap_gb, smoke)
    total = time.perf_counter() - t_start
    ok = inference_ok and oom_ok
    print(f"\n{'all checks passed' if ok else 'SOME CHECKS FAILED'} in {total:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
