"""Langevin MD of a small MoS2 flake (bare or on graphene) with the CHGNet universal potential.

Issue 17, item 2: the trajectories from which ``extract_table.py`` takes the coordination-dependent
vibration amplitudes shipped as ``src/napari_hrtem/simulation/data/mos2_vibrations_chgnet_300K.json``.

The flake is cut from a 2H-MoS2 sheet (``ase.build.mx2``, a = 3.16 Å): the Mo atoms within an
irregular outline (radius ``--radius`` Å modulated by two random harmonics), every S atom bonded to
a kept Mo, then ``--vacancies`` S atoms removed at random (single S vacancies). It sits in a periodic
cell with ``--gap`` Å (default 8) of vacuum between its periodic images in-plane and 8 Å above and below; ``supported`` adds a
periodic graphene sheet (a = 2.46 Å, rectangular 4-atom cell) 3.4 Å below the bottom S plane.

The cut structure is first relaxed (``--relax`` FIRE steps) so that edge reconstruction does not count as
vibration. Dynamics: ASE Langevin at ``--temperature`` K, 1 fs step, friction ``--friction`` (1/fs), velocities
drawn from Maxwell-Boltzmann at that temperature; ``--equil`` steps discarded, then ``--steps`` steps
with a frame written every ``--interval`` steps to ``OUT/<system>.traj``. ``OUT/<system>.json``
records the provenance (package and model versions, settings, atom counts, seed, wall time).

Run with a separate environment holding chgnet (not a dependency of napari-hrtem)::

    python3.11 -m venv /work/mdenv
    /work/mdenv/bin/pip install torch==2.13.0 chgnet ase
    OMP_NUM_THREADS=1 nice -n 10 /work/mdenv/bin/python recipes/md_vibrations/run_md.py bare --out md_runs
    OMP_NUM_THREADS=1 nice -n 10 /work/mdenv/bin/python recipes/md_vibrations/run_md.py supported --out md_runs

This script imports only numpy, ase, torch and chgnet.

References
----------
B. Deng, P. Zhong, K. Jun, J. Riebesell, K. Han, C. J. Bartel, G. Ceder, "CHGNet as a pretrained
universal neural network potential for charge-informed atomistic modelling", Nature Machine
Intelligence 5, 1031 (2023).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

A_MOS2 = 3.16  # Å, lattice constant of the flake (as the simulations of napari-hrtem)
THICKNESS = 3.19  # Å, S-S distance across the layer (ase.build.mx2 default)
A_GRAPHENE = 2.46  # Å
SUPPORT_GAP = 3.4  # Å, graphene plane to bottom S plane
VACUUM = 8.0  # Å


def make_flake(radius: float, vacancies: int, rng: np.random.Generator):
    """A 2H-MoS2 flake with an irregular outline and ``vacancies`` single S vacancies (ase.Atoms, no cell)."""
    from ase.build import mx2

    n = int(np.ceil(2 * (radius + 6) / A_MOS2)) + 2
    sheet = mx2("MoS2", kind="2H", a=A_MOS2, thickness=THICKNESS, size=(n, n, 1), vacuum=0.0)
    pos = sheet.get_positions()
    is_mo = sheet.numbers == 42
    centre = pos[is_mo][:, :2].mean(axis=0)
    centre = pos[is_mo][np.argmin(np.linalg.norm(pos[is_mo][:, :2] - centre, axis=1)), :2]  # on a Mo atom
    d = pos[:, :2] - centre
    phi = np.arctan2(d[:, 1], d[:, 0])
    a2, a3 = rng.uniform(0.05, 0.15, 2)
    p2, p3 = rng.uniform(0, 2 * np.pi, 2)
    outline = radius * (1 + a2 * np.cos(2 * phi + p2) + a3 * np.cos(3 * phi + p3))
    keep_mo = is_mo & (np.linalg.norm(d, axis=1) <= outline)
    mo_pos = pos[keep_mo]
    s_idx = np.flatnonzero(~is_mo)
    dist = np.linalg.norm(pos[s_idx][:, None, :] - mo_pos[None, :, :], axis=2).min(axis=1)
    keep_s = s_idx[dist < 2.7]  # Mo-S bond 2.41 Å
    keep_s = np.setdiff1d(keep_s, rng.choice(keep_s, size=vacancies, replace=False))
    flake = sheet[np.sort(np.concatenate([np.flatnonzero(keep_mo), keep_s]))]
    flake.set_cell(np.zeros((3, 3)))
    flake.pbc = False
    flake.positions -= flake.positions.mean(axis=0)
    return flake


def make_system(kind: str, radius: float, vacancies: int, seed: int, gap: float = VACUUM):
    """The flake in a periodic cell with vacuum (``gap`` Å in-plane between images), bare or on graphene."""
    from ase import Atoms

    rng = np.random.default_rng(seed)
    flake = make_flake(radius, vacancies, rng)
    extent = np.ptp(flake.positions[:, :2], axis=0)
    # rectangular graphene cell: a x sqrt(3) a with 4 atoms; the cell is a whole number of them
    gx, gy = A_GRAPHENE, A_GRAPHENE * np.sqrt(3)
    nx = int(np.ceil((extent[0] + gap) / gx))
    ny = int(np.ceil((extent[1] + gap) / gy))
    lx, ly = nx * gx, ny * gy
    z_bottom = flake.positions[:, 2].min()
    if kind == "bare":
        lz = np.ptp(flake.positions[:, 2]) + 2 * VACUUM
        flake.positions += np.array([lx / 2, ly / 2, VACUUM - z_bottom])
        system = flake
    elif kind == "supported":
        lz = np.ptp(flake.positions[:, 2]) + SUPPORT_GAP + 2 * VACUUM
        z_graphene = VACUUM
        flake.positions += np.array([lx / 2, ly / 2, z_graphene + SUPPORT_GAP - z_bottom])
        # 4-atom rectangular cell of graphene (a x √3 a): C-C bonds of a/√3 = 1.42 Å
        basis = np.array([[0.0, 0.0], [gx / 2, gy / 6], [gx / 2, gy / 2], [0.0, 2 * gy / 3]])
        ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
        offsets = np.stack([ii.ravel() * gx, jj.ravel() * gy], axis=1)
        xy = (offsets[:, None, :] + basis[None, :, :]).reshape(-1, 2)
        graphene = Atoms("C" * len(xy), positions=np.column_stack([xy, np.full(len(xy), z_graphene)]))
        system = graphene + flake
    else:
        raise ValueError(f"unknown system {kind!r} (bare or supported)")
    system.set_cell([lx, ly, lz])
    system.pbc = True
    return system


def versions() -> dict:
    import ase
    import chgnet
    import torch

    return {
        "chgnet": chgnet.__version__,
        "ase": ase.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("system", choices=["bare", "supported"])
    p.add_argument("--out", default="md_runs", help="folder for <system>.traj and <system>.json")
    p.add_argument("--radius", type=float, default=8.5, help="flake radius in Å (default 8.5: about 17 Å across)")
    p.add_argument("--gap", type=float, default=VACUUM, help="Å of vacuum in-plane between periodic images (default 8)")
    p.add_argument("--vacancies", type=int, default=3, help="single S vacancies (default 3)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs (default 0.01)")
    p.add_argument(
        "--relax", type=int, default=200, help="FIRE steps relaxing the cut flake before the MD (default 200; 0: none)"
    )
    p.add_argument("--equil", type=int, default=400, help="equilibration steps, discarded (default 400)")
    p.add_argument("--steps", type=int, default=2000, help="recorded steps (default 2000)")
    p.add_argument("--interval", type=int, default=5, help="steps between frames (default 5)")
    p.add_argument("--seed", type=int, default=17, help="seed of the structure and the dynamics (default 17)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--dry", type=int, default=0, help="only time this many MD steps and print the atom counts")
    args = p.parse_args(argv)

    import torch
    from ase import units
    from ase.constraints import FixCom
    from ase.io import Trajectory
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    atoms = make_system(args.system, args.radius, args.vacancies, args.seed, args.gap)
    counts = {
        str(el): int(n) for el, n in zip(*np.unique(atoms.get_chemical_symbols(), return_counts=True), strict=True)
    }
    model = CHGNet.load()  # the pretrained weights shipped in the chgnet wheel (no download)
    atoms.calc = CHGNetCalculator(model=model, use_device="cpu")
    rng = np.random.default_rng([args.seed, 1])
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)
    if args.system == "bare":
        ZeroRotation(atoms)
    atoms.set_constraint(FixCom())  # no drift of the whole system (ASE's recommended form of fixcm)
    dyn = Langevin(
        atoms,
        timestep=args.timestep * units.fs,
        temperature_K=args.temperature,
        friction=args.friction / units.fs,
        rng=np.random.default_rng([args.seed, 2]),
        fixcm=False,
    )
    print(f"{args.system}: {len(atoms)} atoms {counts}, cell {atoms.cell.lengths().round(2)} Å", flush=True)
    if args.dry:
        t0 = time.perf_counter()
        dyn.run(args.dry)
        dt = (time.perf_counter() - t0) / args.dry
        total = (args.equil + args.steps) * dt
        print(f"{dt:.3f} s/step; {args.equil}+{args.steps} steps would take {total / 60:.1f} min", flush=True)
        return {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fmax = None
    if args.relax:  # relax the as-cut edges first, so that the recorded motion is vibration, not reconstruction
        from ase.optimize import FIRE

        velocities = atoms.get_velocities()
        atoms.set_velocities(np.zeros_like(velocities))
        FIRE(atoms, logfile=None).run(fmax=0.05, steps=args.relax)
        fmax = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
        atoms.set_velocities(velocities)
        print(
            f"relaxed {args.relax} FIRE steps in {time.perf_counter() - t0:.0f} s, max force {fmax:.3f} eV/Å",
            flush=True,
        )
    temps = []
    for k in range(0, args.equil, 50):
        dyn.run(min(50, args.equil - k))
        temps.append(float(atoms.get_temperature()))
    t_equil = time.perf_counter() - t0
    print(f"equilibrated {args.equil} steps in {t_equil:.0f} s, T {temps[-1]:.0f} K", flush=True)
    traj_path = out / f"{args.system}.traj"
    traj = Trajectory(str(traj_path), "w", atoms)
    recorded = []
    dyn.attach(traj.write, interval=args.interval)
    dyn.attach(lambda: recorded.append(float(atoms.get_temperature())), interval=args.interval)
    dyn.run(args.steps)
    traj.close()
    wall = time.perf_counter() - t0
    model_version = getattr(model, "version", None)
    provenance = {
        "system": args.system,
        "description": (
            f"2H-MoS2 flake (radius {args.radius} Å, irregular outline, {args.vacancies} single S vacancies, "
            f"{args.gap} Å in-plane between periodic images)"
            + (" on one periodic graphene sheet" if args.system == "supported" else " in vacuum")
        ),
        "atoms": counts,
        "n_atoms": len(atoms),
        "cell_A": [round(float(x), 4) for x in atoms.cell.lengths()],
        "lattice_constants_A": {"MoS2": A_MOS2, "graphene": A_GRAPHENE},
        "support_gap_A": SUPPORT_GAP if args.system == "supported" else None,
        "potential": {
            "name": "CHGNet",
            "model_version": model_version,
            "weights": "pretrained weights shipped in the chgnet wheel (CHGNet.load())",
            "reference": (
                "B. Deng et al., CHGNet as a pretrained universal neural network potential for "
                "charge-informed atomistic modelling, Nature Machine Intelligence 5, 1031 (2023)"
            ),
        },
        "dynamics": {
            "integrator": "ase.md.langevin.Langevin with ase.constraints.FixCom",
            "temperature_K": args.temperature,
            "timestep_fs": args.timestep,
            "friction_per_fs": args.friction,
            "relaxation": f"ase.optimize.FIRE, at most {args.relax} steps to fmax 0.05 eV/Å (reached {fmax} eV/Å)",
            "equilibration_steps": args.equil,
            "recorded_steps": args.steps,
            "frame_interval_steps": args.interval,
            "frames": len(recorded),
            "mean_temperature_K": round(float(np.mean(recorded)), 1) if recorded else None,
            "seed": args.seed,
            "torch_threads": args.threads,
        },
        "versions": versions(),
        "wall_time_s": round(wall, 1),
        "trajectory": traj_path.name,
    }
    (out / f"{args.system}.json").write_text(json.dumps(provenance, indent=1, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(provenance, indent=1, ensure_ascii=False), flush=True)
    return provenance


if __name__ == "__main__":
    main()
