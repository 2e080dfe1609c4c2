"""Issue 17, round 19: train one network on a GPU machine for a fixed wall-clock budget (the lent device).

The banks come from ``recipes/issue17/export-bank.py`` (no zarr there). The focal series are made on the
GPU by the batched synthesis (:func:`napari_hrtem.training.trainer.exit_wave_bank`), but their
preprocessing (support filter, local normalization: numpy, about 0.1 s per series on one core) would
leave the GPU idle, so this script runs it in a pool of worker processes, one batch ahead of the
optimizer. Everything else is :func:`napari_hrtem.api.train` as shipped. The number of steps is
chosen from the measured time of a batch so that the run, with its cosine decay, ends inside
``--budget`` seconds; a hard stop at the budget keeps the last checkpoint.

Usage (on the device; PYTHONPATH=src)::

    python recipes/issue17/train-round19-gpu.py BANK_DIR OUT_DIR NAME --init msdnet --set depth=64 \
        --budget 420 --workers 7 --batch-size 16 --lr 1e-3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np


def _read_bank():
    import importlib.util

    spec = importlib.util.spec_from_file_location("export_bank", Path(__file__).resolve().parent / "export-bank.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_bank


def _preprocess(args):
    from napari_hrtem.analysis.filters import preprocess

    image, sampling = args
    return preprocess(image, sampling)


def pooled_exit_wave_bank(pool, original):
    """``exit_wave_bank`` whose preprocessing runs in ``pool``, one batch ahead (same signature)."""
    import napari_hrtem.analysis.filters as filters

    def bank_fn(bank, n_images=3, device=None):
        calls: list = []
        real = filters.preprocess

        def record(image, sampling):
            calls.append((image, float(sampling)))
            return image

        filters.preprocess = record  # exit_wave_bank binds the name when it is called
        try:
            inner = original(bank, n_images, device)
        finally:
            filters.preprocess = real
        pending: dict = {}

        def draw(batch_size, rng):
            calls.clear()
            _, labels = inner(batch_size, rng)
            return pool.map_async(_preprocess, list(calls), chunksize=1), labels

        def synthesize(batch_size, rng):
            if pending.get("size") != batch_size:  # the first call, or the one-series shape probe
                job, labels = draw(batch_size, rng)
                result = (job, labels)
            else:
                result = pending["next"]
            pending.update(size=batch_size, next=draw(batch_size, rng))  # the next batch, made meanwhile
            job, labels = result
            return np.stack(job.get()).astype(np.float32), labels

        return synthesize

    return bank_fn


def _step_time(a, settings: dict) -> float:
    """Seconds of one optimizer step of the network to train, on random data of the batch's shape."""
    import torch

    from napari_hrtem.models.registry import build_model, load_network

    if a.init:
        card = load_network(a.init).card
        arch, cfg = card.architecture, {**card.config, **settings}
    else:
        arch, cfg = a.architecture or "unet", dict(settings)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(arch, n_images=3, n_classes=4, **cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.randn(a.batch_size, 3, 128, 128, device=device)
    y = torch.randint(0, 4, (a.batch_size, 128, 128), device=device)
    times = []
    for _ in range(6):
        t = time.monotonic()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.monotonic() - t)
    return float(np.median(times[1:]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("banks")
    p.add_argument("out")
    p.add_argument("name")
    p.add_argument("--init", default=None)
    p.add_argument("--architecture", default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run")
    p.add_argument("--workers", type=int, default=7)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    start = time.monotonic()
    deadline = start + a.budget
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(a.workers)

    import napari_hrtem.training.datastore as datastore
    import napari_hrtem.training.trainer as trainer
    from napari_hrtem.api import TrainingSettings, train
    from napari_hrtem.training.jobs import parse_settings

    read_bank = _read_bank()
    banks = sorted(str(f) for f in Path(a.banks).glob("*.npz"))
    print(f"[{a.name}] banks {banks}", flush=True)
    read = {path: read_bank(path) for path in banks}  # once: for the probe below and for train()
    datastore.load_exit_waves = lambda path, **kw: read[str(path)]
    original = trainer.exit_wave_bank
    trainer.exit_wave_bank = pooled_exit_wave_bank(pool, original)

    # the time of a batch: the bank made on the device, preprocessed in the pool
    probe = trainer.exit_wave_bank([w for path in banks for w in read[path]], device=a.device)
    rng = np.random.default_rng(0)
    probe(a.batch_size, rng)
    t0 = time.monotonic()
    for _ in range(4):
        probe(a.batch_size, rng)
    per_batch = (time.monotonic() - t0) / 4
    per_step = _step_time(a, parse_settings(a.set))
    print(f"[{a.name}] {per_step:.3f} s per optimizer step (random data)", flush=True)
    left = deadline - time.monotonic() - 45  # reading, building, saving
    steps = int(min(a.max_steps, max(50, 0.85 * left / max(per_batch, per_step))))
    print(f"[{a.name}] {per_batch:.3f} s per batch of {a.batch_size}; {steps} steps in {left:.0f} s", flush=True)

    settings = TrainingSettings(
        steps=steps,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        validate_every=0,
        log_every=100,
        checkpoint_every=250,
        amp=False,
        device=a.device,
    )
    last = {"t": time.monotonic()}

    def progress(event):
        if event.stage == "training" and time.monotonic() - last["t"] > 20:
            last["t"] = time.monotonic()
            info = event.info or {}
            print(f"[{a.name}] step {event.done}/{event.total} loss {info.get('loss')}", flush=True)

    result = train(
        a.architecture,
        banks=banks,
        bank_fraction=1.0,
        init=a.init,
        config=parse_settings(a.set) or None,
        settings=settings,
        name=a.name,
        out=a.out,
        overwrite=True,
        record=dict(command=" ".join(sys.argv), made_with="recipes/issue17/train-round19-gpu.py"),
        stop=lambda: time.monotonic() > deadline + 60,  # a grace for the last steps and saving
        progress=progress,
    )
    pool.terminate()
    summary = dict(
        name=a.name,
        steps=steps,
        step=result.step,
        stopped=result.stopped,
        seconds=round(time.monotonic() - start, 1),
        per_batch=per_batch,
        card=str(result.card_path),
    )
    print(json.dumps(summary), flush=True)
    (Path(a.out) / f"{a.name}.summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
