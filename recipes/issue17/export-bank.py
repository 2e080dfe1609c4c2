"""Export exit-wave stores as compact band-limited banks for a training run on another machine (issue 17).

The device machine of a GPU session takes at most 64 MiB of files and has no zarr: each store's complete
samples are band-limited as for training (:func:`napari_hrtem.training.datastore.load_exit_waves`, the
default cut-off where the temporal envelope of the smallest focal spread is below 1e-6) and written as
``NAME.npz`` (per sample ``re{i}``/``im{i}``: the kept Fourier coefficients as float16, relative error
about 5e-4, far below the dose noise; ``labels{i}``: the uint8 class map) and ``NAME.json`` (per sample:
cell, energy, cut-off, image sampling, the store's parameter ranges). ``read_bank`` reads it back as a
bank for :func:`napari_hrtem.training.trainer.exit_wave_bank`; the round-14 stores (360 waves) take 33 MB.

Usage::

    python recipes/issue17/export-bank.py OUT_DIR STORE.zarr [STORE.zarr ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def export(store: Path, out: Path) -> Path:
    from napari_hrtem.training.datastore import load_exit_waves

    bank = load_exit_waves(store)
    arrays, meta = {}, []
    for i, item in enumerate(bank):
        wave = item["wave"]
        arrays[f"re{i}"] = wave.spectrum.real.astype(np.float16)
        arrays[f"im{i}"] = wave.spectrum.imag.astype(np.float16)
        arrays[f"labels{i}"] = np.asarray(item["labels"], np.uint8)
        meta.append(
            dict(
                extent=[float(e) for e in wave.extent],
                energy=float(wave.energy),
                cutoff=float(wave.cutoff),
                params=wave.params,
                sampling=float(item["sampling"]),
                sample=int(item["sample"]),
                ranges=item["ranges"],
            )
        )
    name = store.name.removesuffix(".zarr")
    np.savez_compressed(out / f"{name}.npz", **arrays)
    (out / f"{name}.json").write_text(json.dumps(meta, default=float), encoding="utf-8")
    return out / f"{name}.npz"


def read_bank(path: str | Path) -> list[dict]:
    """The bank of ``NAME.npz`` and ``NAME.json`` (no pickles): the items of ``load_exit_waves``."""
    from napari_hrtem.simulation.synthesis import BandLimitedWave

    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    bank = []
    with np.load(path, allow_pickle=False) as z:
        for i, m in enumerate(meta):
            spectrum = z[f"re{i}"].astype(np.float32) + 1j * z[f"im{i}"].astype(np.float32)
            wave = BandLimitedWave(
                spectrum=spectrum.astype(np.complex64),
                extent=tuple(m["extent"]),
                energy=m["energy"],
                cutoff=m["cutoff"],
                params=m["params"],
            )
            bank.append(
                dict(wave=wave, labels=z[f"labels{i}"], sampling=m["sampling"], sample=m["sample"], ranges=m["ranges"])
            )
    return bank


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for store in sys.argv[2:]:
        written = export(Path(store), out)
        print(f"{written}: {written.stat().st_size / 1e6:.1f} MB")
