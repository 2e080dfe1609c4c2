"""MSD-net peak training memory: one feature buffer (napari_hrtem) against concatenating per layer.

Each measurement runs in a fresh subprocess (1 thread, glibc mmap threshold fixed at 64 kB so
that freed tensors leave the resident set at once): build the model, run a warm-up step on a
32x32 input, make a 640x640 focal series of batch 1, read the resident memory (VmRSS), run one training step (forward,
cross-entropy, backward, Adam step) and read the peak resident memory (ru_maxrss). The
difference is the step's peak memory. The naive implementation (kept here, not in the package)
uses the very same modules and only replaces the forward pass by
``features = torch.cat([features, layer(features)])``.

Targets (napari-hrtem issue 4): w = 3, d = 50, k = 5: buffer <= 0.5 x naive; w = 9 trains in a
memory limit where the naive one does not (its need is more than twice the buffer's): the naive
w = 9 step is run under an address-space limit of the baseline plus twice the buffer
implementation's peak, and must fail there.

Usage: ``python benchmarks/bench_msdnet_memory.py [--size 640] [--depth 50] [--kernel 5]``.
The machine is shared (2 cores, other jobs running): times are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _vm_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    return 0


def child(impl: str, width: int, depth: int, kernel: int, size: int, limit_mb: float | None) -> dict:
    import resource

    import torch

    from napari_hrtem.models.msdnet import MSDNet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MSDNet(width=width, depth=depth, kernel_size=kernel, checkpoint=impl != "buffer-nocheckpoint")
    if impl == "naive":

        def forward(x, m=model):
            features = x
            for layer in m.layers:
                features = torch.cat([features, layer(features)], dim=1)
            return m.head(features)

        model.forward = forward
    model.train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    # Warm-up step on a tiny input: loads the convolution kernels, so the baseline includes them.
    loss_fn(model(torch.randn(1, 3, 32, 32)), torch.randint(0, 4, (1, 32, 32))).backward()
    opt.zero_grad()
    x = torch.randn(1, 3, size, size)
    y = torch.randint(0, 4, (1, size, size))
    base = _rss_kb()
    if limit_mb is not None:
        cap = (_vm_kb() * 1024) + int(limit_mb * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    t0 = time.perf_counter()
    try:
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ok, error = True, ""
    except (RuntimeError, MemoryError) as exc:
        ok, error = False, str(exc).splitlines()[0][:120]
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(
        impl=impl,
        width=width,
        depth=depth,
        kernel=kernel,
        size=size,
        ok=ok,
        error=error,
        peak_mb=(peak - base) / 1024,
        seconds=seconds,
        limit_mb=limit_mb,
    )


def run(impl, width, args, limit_mb=None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        impl,
        str(width),
        "--depth",
        str(args.depth),
        "--kernel",
        str(args.kernel),
        "--size",
        str(args.size),
    ]
    if limit_mb is not None:
        cmd += ["--limit-mb", str(limit_mb)]
    # A fixed mmap threshold: freed blocks go back to the system at once, so the peak resident
    # memory is the peak of live tensors, not of glibc's heap fragmentation.
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:  # killed (e.g. by the kernel) before reporting
        return dict(
            impl=impl,
            width=width,
            ok=False,
            error=(out.stderr.strip().splitlines() or ["?"])[-1][:120],
            peak_mb=float("nan"),
            seconds=float("nan"),
            limit_mb=limit_mb,
        )
    result = json.loads(lines[-1])
    status = "ok" if result["ok"] else f"FAILED ({result['error']})"
    limit = f" under a limit of {limit_mb:.0f} MB" if limit_mb else ""
    print(
        f"  {impl:<20} w={width}: peak {result['peak_mb']:8.0f} MB, {result['seconds']:6.1f} s{limit}  {status}",
        flush=True,
    )
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "WIDTH"))
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--kernel", type=int, default=5)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--limit-mb", type=float)
    parser.add_argument(
        "--runs",
        default="buffer3,nocheckpoint3,naive3,buffer9,naive9,buffer9limited,naive9small",
        help="comma-separated measurements to make (default: all)",
    )
    parser.add_argument("--buffer9-mb", type=float, help="buffer w=9 peak (MB) when buffer9 is not measured")
    args = parser.parse_args()
    if args.child:
        impl, width = args.child
        print(json.dumps(child(impl, int(width), args.depth, args.kernel, args.size, args.limit_mb)))
        return
    print(
        f"MSD-net training step, batch 1, {args.size}x{args.size}, d = {args.depth}, k = {args.kernel}, "
        "1 thread (shared machine: times indicative)",
        flush=True,
    )
    runs = set(args.runs.split(","))
    res = {}
    if "buffer3" in runs:
        res["buffer3"] = run("buffer", 3, args)
    if "nocheckpoint3" in runs:
        res["nocheckpoint3"] = run("buffer-nocheckpoint", 3, args)
    if "naive3" in runs:
        res["naive3"] = run("naive", 3, args)
    if "buffer3" in res and "naive3" in res:
        ratio = res["buffer3"]["peak_mb"] / res["naive3"]["peak_mb"]
        print(f"w=3: buffer / naive peak memory = {ratio:.3f} (target <= 0.5): {'PASS' if ratio <= 0.5 else 'FAIL'}")
    if "buffer9" in runs:
        res["buffer9"] = run("buffer", 9, args)
    buf9_mb = res["buffer9"]["peak_mb"] if "buffer9" in res else args.buffer9_mb
    if "naive9" in runs and buf9_mb:
        limit = 2 * buf9_mb
        naive9 = run("naive", 9, args, limit_mb=limit)
        line = f"w=9: buffer trains in {buf9_mb:.0f} MB; under a limit of twice that ({limit:.0f} MB) the naive step "
        if "buffer9limited" in runs:
            limited = run("buffer", 9, args, limit_mb=limit)
            line += f"{'fails' if not naive9['ok'] else 'RUNS'}, the buffer step {'runs' if limited['ok'] else 'FAILS'}"
            good = limited["ok"] and not naive9["ok"]
        else:
            line += "fails" if not naive9["ok"] else "RUNS"
            good = not naive9["ok"]
        print(line + f": {'PASS' if good else 'FAIL'}")
    if "naive9small" in runs:
        # Naive w=9 need, extrapolated from a quarter of the pixels (memory is linear in the pixels).
        small = argparse.Namespace(**{**vars(args), "size": args.size // 2})
        r = run("naive", 9, small)
        ratio = f" ({4 * r['peak_mb'] / buf9_mb:.1f} x the buffer's)" if buf9_mb else ""
        print(
            f"w=9 naive at {small.size}x{small.size}: {r['peak_mb']:.0f} MB -> about {4 * r['peak_mb']:.0f} MB "
            f"at {args.size}x{args.size}{ratio}"
        )


if __name__ == "__main__":
    main()
