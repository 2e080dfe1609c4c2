"""Issue 17, item 5: the one prepared GPU run. In a fixed wall-clock budget (default 9 minutes, one
command of the device tool), it simulates a fresh exit-wave store per network on all the machine's CPU
cores (abTEM's multislice runs on the CPU here), then fine-tunes the three networks of a set on the GPU
side by side at a larger batch, sized from a short timed probe so that they end inside the budget, and
writes their weights and model cards, a summary and its logs (one archive) to OUT: 8 files, what
the device tool brings back. Validate them afterwards on the CPU with
``benchmarks/eval_conditions.py --sets ...`` and install them with ``recipes/issue17/install.py``.

Usage (device: see recipes/README.md for the wheels it carries)::

    python3 recipes/gpu/issue17_gpu.py --set hv --out "$OUT"              # 300 kV set
    python3 recipes/gpu/issue17_gpu.py --set lv --out "$OUT" --minutes 9   # 50-80 kV set
    python recipes/gpu/issue17_gpu.py --set lv --out /tmp/g --small       # a 2-minute check on a CPU

Each network's stores use seeds of its own (network k: 17k50-17k59, never used elsewhere), so the
three networks still see different exit waves (seed 003).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ISSUE17 = HERE.parent / "issue17"
SETS = {  # network name, architecture, k, [(store suffix, energy kV, recipe file)], validation energy kV
    "hv": [
        ("unet-300kv", "unet", 1, [("hv300", 300, "train-data.yaml")]),
        ("unetpp-300kv", "unetpp", 2, [("hv300", 300, "train-data.yaml")]),
        ("msdnet-300kv", "msdnet", 3, [("hv300", 300, "train-data.yaml")]),
    ],
    "lv": [
        (net, net, k, [("t50", 50, "train-data-t1.yaml"), ("t80", 80, "train-data-t1.yaml"), ("c80", 80, cont)])
        for net, k, cont in (
            ("unet", 1, "train-data-t1c.yaml"),
            ("unetpp", 2, "train-data-t1c-md.yaml"),
            ("msdnet", 3, "train-data-t1c.yaml"),
        )
    ],
}
VALIDATION_KV = {"hv": 300, "lv": 80}


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def hrtem(*args: str) -> list[str]:
    return [sys.executable, "-m", "napari_hrtem.cli", *args]


def run_until(commands: list[list[str]], deadline: float, logs: list[Path]) -> list[int | None]:
    """Run commands side by side; at the deadline interrupt what still runs (SIGINT: a store keeps its
    complete samples), then end each one's whole process group (dask workers included)."""
    procs = []
    for cmd, path in zip(commands, logs):
        log("run:", " ".join(cmd[2:]))
        procs.append(subprocess.Popen(cmd, stdout=open(path, "w"), stderr=subprocess.STDOUT, start_new_session=True))
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(2)
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return [p.poll() for p in procs]


def simulate_cmd(store: Path, count: int, kv: int, seed: str, workers: int, config=None, image_epochs=1) -> list[str]:
    """``napari-hrtem simulate-dataset`` of ``count`` 128² exit waves at ``kv`` (a recipe file, else Table 1)."""
    args = ["--out", str(store), "--structures", str(count), "--energy", str(kv), "--size", "128"]
    args += ["--image-epochs", str(image_epochs), "--phonon-configs", "4", "--seed", seed, "--workers", str(workers)]
    return hrtem("simulate-dataset", *args, *(["--config", str(config)] if config else []))


def complete_samples(store: Path) -> int:
    from napari_hrtem.training.datastore import completed_samples

    return len(completed_samples(store)) if store.exists() else 0


def seconds_per_step(log_file: Path) -> float | None:
    """From the last two progress lines ``step S/N  T s ...`` of a training log."""
    lines = re.findall(r"step (\d+)/\d+\s+([\d.]+) s", log_file.read_text(errors="replace"))
    if len(lines) < 2:
        return None
    (s0, t0), (s1, t1) = lines[-2], lines[-1]
    return (float(t1) - float(t0)) / max(int(s1) - int(s0), 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", choices=sorted(SETS), default="hv")
    p.add_argument("--out", required=True, help="folder for weights, cards and logs (the device's $OUT)")
    p.add_argument("--data", default="/tmp/issue17-gpu", help="working folder for the stores")
    p.add_argument("--minutes", type=float, default=9.0, help="wall-clock budget of the whole run")
    p.add_argument("--simulate-share", type=float, default=0.4, help="share of the budget for the stores")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--small", action="store_true", help="a quick check on a CPU: tiny stores, a few steps")
    a = p.parse_args(argv)
    start = time.monotonic()
    end = start + 60 * a.minutes
    out, data = Path(a.out), Path(a.data)
    logs_dir, nets_dir = data / "logs", data / "nets"
    for folder in (out, data, logs_dir, nets_dir):
        folder.mkdir(parents=True, exist_ok=True)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cores = os.cpu_count() or 1
    log(f"set {a.set}, device {device}", torch.cuda.get_device_name() if device == "cuda" else "", f"{cores} cores")
    nets = SETS[a.set]

    # 1. stores: every network's stores side by side, the cores shared out, until the simulation budget ends
    sim_deadline = start + 60 * a.minutes * a.simulate_share
    jobs, logs, stores = [], [], {}
    n_stores = sum(len(n[3]) for n in nets)
    for name, _, k, recipe in nets:
        stores[name] = []
        for i, (suffix, kv, config) in enumerate(recipe):
            store = data / f"{suffix}_gpu_net{k}.zarr"
            stores[name].append(store)
            workers = cores // n_stores + (len(jobs) < cores % n_stores) or 1  # the cores shared out
            count = 3 if a.small else 2000  # more than fit: the deadline decides
            jobs.append(simulate_cmd(store, count, kv, f"17{k}5{i}", workers, config=ISSUE17 / config))
            logs.append(logs_dir / f"simulate_{store.stem}.log")
    validation = data / f"val{VALIDATION_KV[a.set]}_gpu.zarr"  # thesis Table 1 at that energy
    jobs.append(simulate_cmd(validation, 2 if a.small else 8, VALIDATION_KV[a.set], "17959", 1, image_epochs=3))
    logs.append(logs_dir / "simulate_validation.log")
    run_until(jobs, sim_deadline, logs)
    for name, store_list in stores.items():
        log(name, "exit waves:", {s.stem: complete_samples(s) for s in store_list})
    log("validation series:", complete_samples(validation))

    # 2. a timed probe of each network, then the real runs sized to end before the budget does
    def train_cmd(name, arch, k, steps, out_dir, tag):
        banks = [x for s in stores[name] if complete_samples(s) for x in ("--bank", str(s))]
        cmd = hrtem("train", "--architecture", arch, "--init", name, *banks, "--steps", str(steps),
                    "--batch-size", str(2 if a.small else a.batch_size), "--lr", str(a.lr), "--seed", f"5{k}",
                    "--threads", str(max(1, cores // len(nets))), "--device", device, "--name", f"{name}-{tag}",
                    "--out", str(out_dir), "--validate-every", "0", "--log-every", "5" if a.small else "20",
                    "--checkpoint-every", "0", "--checkpoint-dir", str(data / f"{name}-{tag}.checkpoint"),
                    "--overwrite")  # fmt: skip
        if complete_samples(validation) and tag == "gpu":
            cmd += ["--validation", str(validation)]
        return cmd

    nets = [n for n in nets if any(complete_samples(s) for s in stores[n[0]])]  # never train without waves
    probe_steps = 10 if a.small else 60
    probe_dir = data / "probe"
    probe_logs = [logs_dir / f"probe_{n[0]}.log" for n in nets]
    run_until([train_cmd(*n[:3], probe_steps, probe_dir, "probe") for n in nets], end - 60, probe_logs)
    shutil.rmtree(probe_dir, ignore_errors=True)
    left = end - time.monotonic() - (30 if a.small else 90)  # loading, validation and saving
    steps = []
    for (name, *_), probe in zip(nets, probe_logs):
        rate = seconds_per_step(probe)
        steps.append(max(5, int(0.85 * left / rate)) if rate else 0)
        log(name, f"probe {rate} s/step ->", steps[-1], "steps")
    runs = [(n, s) for n, s in zip(nets, steps) if s]
    train_logs = [logs_dir / f"train_{n[0]}.log" for n, _ in runs]
    codes = run_until([train_cmd(*n[:3], s, nets_dir, "gpu") for n, s in runs], end, train_logs)
    summary = dict(set=a.set, device=device, minutes=(time.monotonic() - start) / 60, exit_codes=codes,
                   exit_waves={n: [complete_samples(s) for s in v] for n, v in stores.items()},
                   steps={n[0]: s for n, s in runs}, batch_size=a.batch_size)  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log("summary", json.dumps(summary))
    for made in sorted(nets_dir.glob("*-gpu.*")):
        if made.suffix in (".pt", ".json"):
            shutil.copyfile(made, out / made.name)
            log("wrote", made.name, made.stat().st_size, "bytes")
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        tar.add(logs_dir, arcname="logs")
    return 0 if all(c == 0 for c in codes) and runs else 1


if __name__ == "__main__":
    sys.exit(main())
