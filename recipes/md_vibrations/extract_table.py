"""Vibration tables from the CHGNet trajectories of ``run_md.py``, pooled into the packaged table.

Run with the project's environment (napari-hrtem installed)::

    python recipes/md_vibrations/extract_table.py md_runs \
        --out src/napari_hrtem/simulation/data/mos2_vibrations_chgnet_300K.json

For each run (``bare``, ``supported``) the flake (Mo, S) is taken as a free cluster: the frames of its
atoms are aligned rigidly (centre of mass and rotation removed, Kabsch fit to the mean structure), so a
flake that turns or slides on the support does not count as vibration. The graphene sheet of the
supported run is periodic and only its drift is removed. Each atom's σ is the per-direction standard
deviation of its position (``coordination_table_from_trajectory``), averaged per element and coordination
number of the mean structure. The packaged table pools Mo and S of both runs (the mean of the two runs' σ per
element and coordination number, each run weighted alike, as a training set is about half bare and half
supported samples) and takes C from the supported run; the per-run tables, in-plane and out-of-plane σ, the Debye
model's values at the same temperature and the MD provenance are kept in its ``provenance`` block.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from napari_hrtem.simulation.vibrations import (
    CoordinationTable,
    _kabsch,
    coordination_table_from_trajectory,
    debye_sigmas,
)


def _subset(frames, keep, periodic: bool):
    out = []
    for f in frames:
        sub = f[keep]
        sub.pbc = periodic
        if not periodic:
            sub.set_cell(np.zeros((3, 3)))
        out.append(sub)
    return out


def _unwrapped(frames) -> np.ndarray:
    pos = np.stack([f.get_positions() for f in frames])
    if np.any(frames[0].pbc):
        cell = frames[0].cell.array
        frac = np.diff(pos, axis=0) @ np.linalg.pinv(cell)
        frac -= np.round(frac) * frames[0].pbc
        pos = np.concatenate([pos[:1], pos[:1] + np.cumsum(frac @ cell, axis=0)])
    return pos


def directional_sigmas(frames, rigid: bool) -> dict:
    """Per element, after the same alignment: mean in-plane (x, y) and out-of-plane (z) σ in Å, and the mean and
    largest shift of an atom's mean position between the first and the second half of the run (Å; structural
    change, such as edge reconstruction, rather than vibration, shows as a large shift)."""
    pos = _unwrapped(frames)
    pos = pos - pos.mean(axis=1, keepdims=True)
    if rigid:
        ref = pos[0]
        for _ in range(3):
            pos = np.stack([p @ _kabsch(p, ref) for p in pos])
            ref = pos.mean(axis=0)
    var = pos.var(axis=0)  # (n, 3)
    half = len(pos) // 2
    shift = np.linalg.norm(pos[:half].mean(axis=0) - pos[half:].mean(axis=0), axis=1)
    symbols = np.array(frames[0].get_chemical_symbols())
    return {
        str(el): {
            "in_plane": round(float(np.sqrt(var[symbols == el, :2].mean(axis=1)).mean()), 4),
            "out_of_plane": round(float(np.sqrt(var[symbols == el, 2]).mean()), 4),
            "half_to_half_shift_mean": round(float(shift[symbols == el].mean()), 4),
            "half_to_half_shift_max": round(float(shift[symbols == el].max()), 4),
        }
        for el in sorted(set(symbols))
    }


def run_tables(folder: Path, system: str, skip: int) -> tuple[dict, dict, dict]:
    """``({part: CoordinationTable}, {part: directional σ}, provenance of the run)``."""
    from ase.io import read

    provenance = json.loads((folder / f"{system}.json").read_text(encoding="utf-8"))
    frames = read(str(folder / f"{system}.traj"), index=":")[skip:]
    temperature = float(provenance["dynamics"]["temperature_K"])
    symbols = np.array(frames[0].get_chemical_symbols())
    parts = {"flake": np.flatnonzero(symbols != "C")}
    if (symbols == "C").any():
        parts["graphene"] = np.flatnonzero(symbols == "C")
    tables, directions = {}, {}
    for part, keep in parts.items():
        periodic = part == "graphene"
        sub = _subset(frames, keep, periodic)
        tables[part] = coordination_table_from_trajectory(
            sub, temperature=temperature, align="translation" if periodic else "rigid"
        )
        directions[part] = directional_sigmas(sub, rigid=not periodic)
    return tables, directions, provenance


def pooled(tables: list[CoordinationTable]) -> tuple[dict, dict]:
    """Mean σ per (element, coordination number) over the ``tables`` that have it, each run weighted alike
    (a training set is about half bare, half supported samples); the counts are summed."""
    values: dict = {}
    counts: dict = {}
    for t in tables:
        for el, row in t.sigmas.items():
            for cn, sigma in row.items():
                values.setdefault(el, {}).setdefault(cn, []).append(sigma)
                counts.setdefault(el, {}).setdefault(cn, 0)
                counts[el][cn] += t.counts[el][cn]
    sigmas = {el: {cn: round(float(np.mean(v)), 5) for cn, v in sorted(row.items())} for el, row in values.items()}
    return sigmas, {el: dict(sorted(row.items())) for el, row in counts.items()}


def main(argv=None) -> CoordinationTable:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="the --out folder of run_md.py (bare.traj/json, supported.traj/json)")
    p.add_argument("--out", required=True, help="the table JSON to write")
    p.add_argument("--skip", type=int, default=0, help="frames discarded at the start (run_md.py already equilibrates)")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    runs, flake_tables, graphene = {}, [], None
    for system in ("bare", "supported"):
        if not (folder / f"{system}.traj").is_file():
            continue
        tables, directions, provenance = run_tables(folder, system, args.skip)
        flake_tables.append(tables["flake"])
        graphene = tables.get("graphene", graphene)
        runs[system] = {
            "md": provenance,
            "tables": {
                part: {"sigmas": t.to_dict()["sigmas"], "counts": t.to_dict()["counts"]} for part, t in tables.items()
            },
            "sigma_in_plane_out_of_plane_A": directions,
        }
        for part, t in tables.items():
            print(f"{system} {part}:\n{t.describe()}\n  directions: {directions[part]}")
    if not runs:
        raise SystemExit(f"{folder}: no bare.traj or supported.traj")
    sigmas, counts = pooled(flake_tables + ([graphene] if graphene is not None else []))
    temperature = float(next(iter(runs.values()))["md"]["dynamics"]["temperature_K"])
    elements = sorted(sigmas)
    debye = {
        "580K_all": {el: round(v, 5) for el, v in debye_sigmas(elements, temperature, 580.0).items()},
        "per_element_theta_D": {
            el: round(v, 5)
            for el, v in debye_sigmas(elements, temperature, {"Mo": 580.0, "S": 580.0, "C": 2312.0}).items()
        },
    }
    table = CoordinationTable(
        sigmas=sigmas,
        counts=counts,
        temperature=temperature,
        source="CHGNet molecular dynamics, recipes/md_vibrations (napari-hrtem issue 17)",
        provenance={
            "method": (
                "Langevin MD with the CHGNet universal potential; per-atom per-direction sigma of the position "
                "(flake: rigid alignment of its frames; graphene: drift removed), averaged per element and "
                "coordination number (napari_hrtem.simulation.vibrations.coordination_numbers, cutoff_mult "
                "1.2); Mo and S: mean of the bare and the supported run's sigma per coordination number (runs "
                "weighted alike), C from the supported run"
            ),
            "potential_reference": (
                "B. Deng, P. Zhong, K. Jun, J. Riebesell, K. Han, C. J. Bartel, G. Ceder, CHGNet as a pretrained "
                "universal neural network potential for charge-informed atomistic modelling, Nature Machine "
                "Intelligence 5, 1031 (2023)"
            ),
            "debye_sigma_A_same_temperature": debye,
            "runs": runs,
        },
    )
    table.save(args.out)
    print(f"pooled ({args.out}):\n{table.describe()}\nDebye at {temperature:g} K: {debye}")
    return table


if __name__ == "__main__":
    main()
