"""Measurements of the issue-17 specimen features (docs/measurements/specimen.md): contamination, tilt, alignment, vacuum."""

import time

import abtem
import numpy as np

from napari_hrtem.simulation.contamination import amorphous_carbon, carbon_number_density
from napari_hrtem.simulation.imaging import exit_wave
from napari_hrtem.simulation.structures import make_mos2_sample

# 1. amorphous carbon: count and time, 256 px at 0.22 Å/px, 10 Å
L = 256 * 0.22
t = time.perf_counter()
c = amorphous_carbon((L, L), 10.0, np.random.default_rng(0))
dt = time.perf_counter() - t
print(
    f"a-C {L:.2f} Å square x 10 Å: {len(c)} atoms ({len(c) / (L * L * 10):.4f} /Å³, target {carbon_number_density(2.0):.4f}), {dt:.2f} s"
)
t = time.perf_counter()
s = make_mos2_sample(L, graphene_layers=2, seed=1, contamination_thickness=10.0, contamination_coverage=1.0)
print(f"sample with 10 Å on both sides: {s.params['contamination_atoms']} C atoms, {time.perf_counter() - t:.2f} s")
# 2. tilt: projected potential at S2 and Mo sites
for tilt in (0.0, 2.0, 4.0, 6.0):
    s = make_mos2_sample(16.0, tilt=tilt, tilt_azimuth=30.0, rotation=0.0, vacancy_fraction=0, hole_fraction=0, seed=2)
    pot = abtem.Potential(s.atoms, sampling=0.04, projection="infinite", parametrization="kirkland")
    pr = pot.project().compute(progress_bar=False).array
    out = []
    for code in (0, 1):
        st = s.sites[s.classes == code]
        ix = np.round(st[:, 1] / pot.sampling[0]).astype(int) % pr.shape[0]
        iy = np.round(st[:, 0] / pot.sampling[1]).astype(int) % pr.shape[1]
        out.append(pr[ix, iy].mean())
    if tilt == 0:
        ref = out
    print(f"tilt {tilt:.0f}°: projected potential at Mo {out[0] / ref[0]:.3f}, at S2 {out[1] / ref[1]:.3f} of untilted")
# 3. aligned supports under the default recipe (uniform relative rotation)
rng = np.random.default_rng(0)
gaps = []
for _ in range(400):
    s = make_mos2_sample(12.0, graphene_layers=1, seed=int(rng.integers(2**31)))
    g = (s.params["support_rotation"] - s.params["rotation"]) % 60
    gaps.append(min(g, 60 - g))
print(f"default: relative rotation within 1° of aligned in {np.mean(np.array(gaps) < 1):.3f} of 400 samples")
# 4. vacuum fraction -> fraction of sites removed
full = make_mos2_sample(56.0, flake_fraction=1.5, hole_fraction=0, vacancy_fraction=0, seed=5)
for f in (0.1, 0.3, 0.5):
    h = make_mos2_sample(56.0, flake_fraction=1.5, hole_fraction=0, vacancy_fraction=0, seed=5, vacuum_fraction=f)
    print(f"vacuum_fraction {f}: {1 - len(h.sites) / len(full.sites):.3f} of the sites removed")
# 5. exit-wave phase: a-C contamination vs the flake's contrast (64 px, 0.22 Å/px, 50 keV, static)
n = 64
kw = dict(graphene_layers=0, flake_fraction=0.6, seed=3)
bare = make_mos2_sample(n * 0.22, **kw)
wb = exit_wave(bare, (n, n), 0.22, phonon_configs=1, max_wave_sampling=0.11)
pb = np.angle(wb.array)
for th in (2.0, 5.0, 10.0):
    d = make_mos2_sample(n * 0.22, contamination_thickness=th, **kw)
    wd = exit_wave(d, (n, n), 0.22, phonon_configs=1, max_wave_sampling=0.11)
    pd = np.angle(wd.array)
    print(f"a-C {th:.0f} Å on both sides: phase std {np.std(pd - pb):.3f} rad (flake phase std {np.std(pb):.3f} rad)")
# 6. per-element Debye temperatures: sigmas and their effect on an exit wave
from napari_hrtem.simulation.vibrations import DEBYE_TEMPERATURES, debye_sigmas  # noqa: E402

for temperature in (100.0, 300.0, 600.0):
    thesis = debye_sigmas(["Mo", "S", "C"], temperature, 580.0)
    sourced = debye_sigmas(["Mo", "S", "C"], temperature, DEBYE_TEMPERATURES)
    print(f"{temperature:.0f} K: sigma 580 K {thesis}, sourced {sourced}")
sample = make_mos2_sample(32 * 0.22, graphene_layers=1, flake_fraction=0.2, seed=3)
kw = dict(phonon_configs=3, seed=4, temperature=600.0, max_wave_sampling=0.11)
static = exit_wave(sample, (32, 32), 0.22, phonon_configs=1, max_wave_sampling=0.11)
soft = exit_wave(sample, (32, 32), 0.22, debye_temperature=580.0, **kw)
stiff = exit_wave(sample, (32, 32), 0.22, debye_temperature=DEBYE_TEMPERATURES, **kw)
print(
    f"mean |exit wave - static|: 580 K {np.abs(soft.array - static.array).mean():.4f}, "
    f"sourced {np.abs(stiff.array - static.array).mean():.4f}"
)
