"""CPU inference, old against new, per shipped network and series size (issue 16 item 2).

Prints, side by side in one run and at the same torch thread count, for each shipped network and
each size: the time of today's reference path (the plain network as loaded, float32,
:func:`~napari_hrtem.analysis.inference.predict_probabilities` with its tiles) and of the new default
path (:func:`napari_hrtem.models.fast.inference_model`: batch norm folded, channels-last, the MSD-net
as one matrix product per layer; in float32 and in the ``--precision`` asked, by default ``auto`` =
bfloat16 on a CPU with native bfloat16), their ratio, and how far the sites agree (old against new:
counts, F1 of sites matched within 0.1 Å and 0.5 Å, same class, largest shift, and whether that is
within :data:`napari_hrtem.models.fast.BF16_TOLERANCE`). The same preprocessed series goes through
both paths; the preprocessing (resample + support filter + local normalization) and the site finding
are timed too, to see which part dominates.

Times are the process' CPU time (``time.process_time``, stable on a shared machine: the ratio is
taken from it) and wall time, each the best of ``--repeat`` runs (default 3 up to 1024², 1 above). The series is a 256x256 simulated focal series of MoS2 on two
graphene layers at 0.22 Å/px (resampled to the networks' 0.2246 Å/px), repeated to each size.

Run:  python benchmarks/bench_cpu_inference.py                          # 1024² and 4096², 1 thread
      python benchmarks/bench_cpu_inference.py --sizes 1024 --threads 2
      python benchmarks/bench_cpu_inference.py --sizes 512 --networks msdnet --precision float32

Measured (AMD EPYC with avx512_bf16, 1 thread, torch 2.13, shared 2-core machine;
docs/measurements/cpu-inference.md), CPU-time ratio old/new in auto precision (= bfloat16 here):
1024² U-Net 2.6, U-Net++ 2.8, MSD-net 6.7; 4096² 2.5, 2.7, 6.4. In float32 (a CPU without native
bfloat16): 1.8, 1.8, 4.4 and 1.8, 1.9, 4.0. Sites: float32 identical; bfloat16 F1 within 0.5 Å
>= 0.9999, same classes, largest shift 0.36 Å. Preprocessing at 1024² (0.7-1.0 s, once for all
networks) is more than one network in bfloat16, less than the three together; find_sites 0.04 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def simulated_series(size: int) -> tuple[np.ndarray, float]:
    """A ``(3, size, size)`` float32 focal series at 0.22 Å/px: one 256² simulated tile repeated."""
    from napari_hrtem.simulation.imaging import MicroscopeParameters, simulate_focal_series
    from napari_hrtem.simulation.structures import make_mos2_sample

    sample = make_mos2_sample(256 * 0.22, graphene_layers=2, rotation=10.0, seed=0, flake_fraction=1.4)
    tile, _ = simulate_focal_series(sample, (256, 256), 0.22, MicroscopeParameters(), seed=0, phonon_configs=1)
    reps = int(np.ceil(size / 256))
    return np.ascontiguousarray(np.tile(tile, (1, reps, reps))[:, :size, :size]), 0.22


def timed(function, *args, repeat: int = 1, **kwargs):
    """``(result, cpu seconds, wall seconds)``: the fastest of ``repeat`` runs (CPU time and wall time
    each their own minimum; another process' load only ever adds time)."""
    cpu = wall = float("inf")
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        result = function(*args, **kwargs)
        cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - t0)
    return result, cpu, wall


def warm_up(model, n_images: int) -> None:
    """One small forward pass (oneDNN creates its kernels on the first call)."""
    import torch

    with torch.no_grad():
        model(torch.zeros((1, n_images, 64, 64)))


def main(argv=None) -> int:
    import torch

    from napari_hrtem.analysis.inference import (
        DEFAULT_TILE,
        agreement_within,
        find_sites,
        network_threshold,
        predict_probabilities,
        prepare_series,
    )
    from napari_hrtem.models.fast import choose_precision, inference_model, native_bfloat16
    from napari_hrtem.models.registry import WEIGHTS_DIR, available_networks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096], help="series edges, px")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both paths)")
    parser.add_argument("--networks", nargs="*", help="network names (default: the shipped ones)")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile budget, px (both paths)")
    parser.add_argument("--no-float32", action="store_true", help="skip the new path in float32")
    parser.add_argument(
        "--repeat", type=int, help="best of this many runs of each path (default: 3 up to 1024², 1 above)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    precision = choose_precision(args.precision, "cpu", native_bfloat16("cpu"))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bfloat16 {native_bfloat16('cpu')}; "
        f"precision {args.precision} -> {precision}; tile {args.tile} px",
        flush=True,
    )
    nets = [
        n
        for name, n in available_networks().items()
        if (name in args.networks if args.networks else n.weights.parent == WEIGHTS_DIR)  # shipped unless named
    ]
    variants = ([] if args.no_float32 or precision == "float32" else ["float32"]) + [precision]
    header = (
        f"{'network':>8} {'size':>5} {'old CPU s':>9} "
        + " ".join(f"{'new ' + v[:4] + ' s':>11} {'ratio':>5}" for v in variants)
        + f" {'wall old/new':>12} {'sites old':>9} {'sites new':>9} {'F1@0.1Å':>7} {'F1@0.5Å':>7} {'class':>6} "
        f"{'max shift Å':>11} {'in tolerance':>12}"
    )
    rows = []
    for size in args.sizes:
        images, sampling = simulated_series(size)
        repeat = args.repeat or (3 if size <= 1024 else 1)
        card = nets[0].card
        x, prep_cpu, prep_wall = timed(prepare_series, card, images, sampling)
        print(
            f"\n{size}x{size}: preprocessing (resample + support filter + local normalization, once for all "
            f"networks) {prep_cpu:.2f} s CPU, {prep_wall:.2f} s wall -> {x.shape}",
            flush=True,
        )
        for net in nets:
            plain = net.load("cpu")
            threshold = network_threshold(net.card)
            warm_up(plain, net.card.n_images)
            old_prob, old_cpu, old_wall = timed(predict_probabilities, plain, x, tile=args.tile, repeat=repeat)
            old_sites, find_cpu, _ = timed(find_sites, old_prob, net.card.sampling, threshold=threshold)
            del old_prob
            times, new_sites, new_wall = {}, None, 0.0
            for variant in variants:
                fast = inference_model(plain, variant)
                warm_up(fast, net.card.n_images)
                prob, cpu, wall = timed(predict_probabilities, fast, x, tile=args.tile, repeat=repeat)
                times[variant] = cpu
                if variant == precision:
                    new_sites = find_sites(prob, net.card.sampling, threshold=threshold)
                    new_wall = wall
                del prob, fast
            ok, agree = agreement_within(old_sites, new_sites)
            row = (
                f"{net.name:>8} {size:>5} {old_cpu:9.2f} "
                + " ".join(f"{times[v]:11.2f} {old_cpu / times[v]:5.2f}" for v in variants)
                + f" {old_wall / new_wall:12.2f} {agree['n_reference']:9d} {agree['n_other']:9d} {agree['f1_fine']:7.4f} "
                f"{agree['f1']:7.4f} {agree['same_class']:6.4f} {agree['max_shift']:11.4f} {'yes' if ok else 'NO':>12}"
            )
            rows.append(row)
            print(header + "\n" + row, flush=True)
            parts = {
                "network (new)": times[precision],
                "find_sites": find_cpu,
                "preprocessing (all networks)": prep_cpu,
            }
            print(
                "    CPU s: "
                + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
                + f"; largest: {max(parts, key=parts.get)}",
                flush=True,
            )
    print("\nSummary (CPU-time ratio old/new; new = " + ", ".join(variants) + ")")
    print(header)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
