"""The specimen mask: sites only where the images show a specimen with a lattice (issue #12, item 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.path import Path as Polygon

from napari_hrtem.analysis.specimen import specimen_mask

from .conftest import REALDATA, needs_realdata

#: The vacuum of img07-09 (300 kV, 0.2842 Å/px, 1024 x 1024 px): the crystal edge runs from
#: about (y, x) = (850, 0) px through (560, 200) and (400, 400) to (0, 950), with an amorphous rim;
#: this triangle lies 25-55 Å above it, in vacuum only (looked at in a PNG of the frames).
REAL_VACUUM_YX = np.array([(0.0, 0.0), (0.0, 199.0), (184.7, 0.0)])  # Å


def _lattice(shape, sampling, a=3.16, angle=0.3):
    """A hexagonal lattice image (three plane waves of spacing a * sqrt(3) / 2), contrast 1."""
    y, x = np.indices(shape) * sampling
    q = 2 / (np.sqrt(3) * a)
    image = np.zeros(shape)
    for k in range(3):
        t = angle + k * np.pi / 3
        image += np.cos(2 * np.pi * q * (np.cos(t) * y + np.sin(t) * x))
    return image / 3


def _amorphous(shape, sampling, rng):
    """Isotropic random contrast with its power in the band of column spacings (no lattice)."""
    f = np.fft.fft2(rng.standard_normal(shape))
    q = np.hypot(*np.meshgrid(np.fft.fftfreq(shape[0], sampling), np.fft.fftfreq(shape[1], sampling), indexing="ij"))
    f *= np.exp(-(((q - 0.4) / 0.12) ** 2))
    image = np.fft.ifft2(f).real
    return image / image.std() / 3


def test_mask_of_noise_is_empty():
    rng = np.random.default_rng(1)
    m = specimen_mask(rng.poisson(50.0, size=(3, 256, 256)).astype(np.float32), 0.22)
    assert m.mask.shape == (256, 256) and m.mask.dtype == bool
    assert m.fraction < 0.02
    assert 3.0 < m.noise_level < 5.0 and m.lattice_threshold == pytest.approx(1.5 * m.noise_level)


def test_mask_covers_a_lattice_and_not_amorphous_material():
    rng = np.random.default_rng(2)
    shape, sampling = (256, 256), 0.22
    lattice = _lattice(shape, sampling)
    amorphous = _amorphous(shape, sampling, rng)
    left = np.zeros(shape, bool)
    left[:, :128] = True
    frames = []
    for _ in range(3):  # lattice on the left, amorphous material on the right, both with dose noise
        clean = 10.0 + np.where(left, lattice, amorphous)
        frames.append(rng.poisson(clean * 200) / 200)
    m = specimen_mask(np.asarray(frames, np.float32), sampling)
    assert m.mask[:, :100].mean() > 0.97  # the lattice
    assert m.mask[:, 160:].mean() < 0.03  # amorphous: band power well above the noise, but no lattice


@pytest.mark.xfail(
    reason="known limit: the lattice threshold assumes frames with independent noise; an amorphous field that "
    "is identical in every frame passes it in about 14 % of the field (32 Å windows)",
    strict=False,
)
def test_mask_of_a_field_of_only_amorphous_material_is_empty():
    rng = np.random.default_rng(2)
    amorphous = _amorphous((256, 256), 0.22, rng)
    only = np.asarray([rng.poisson((10.0 + amorphous) * 200) / 200 for _ in range(3)], np.float32)
    assert specimen_mask(only, 0.22).fraction < 0.02


def test_contains_maps_positions_with_the_origin():
    m = specimen_mask(np.zeros((3, 64, 64), np.float32) + np.random.default_rng(0).normal(size=(3, 64, 64)), 0.5)
    m.mask[:] = False
    m.mask[10, 20] = True
    m.origin = (1.0, -2.0)
    yx = np.array([(10 * 0.5 + 1.0, 20 * 0.5 - 2.0), (10 * 0.5, 20 * 0.5), (-100.0, 0.0)])
    assert m.contains(yx).tolist() == [True, False, False]


@pytest.fixture(scope="module")
def flake():
    """A bare MoS2 flake smaller than the field (vacuum around it), 192 px at 0.22 Å/px."""
    import napari_hrtem as hrtem

    return hrtem.simulate(size=192, sampling=0.22, sample_options=dict(flake_fraction=0.55), phonon_configs=2, seed=3)


def test_mask_covers_a_simulated_flake(flake):
    m = specimen_mask(flake.series.images, flake.series.sampling)
    assert m.contains(flake.truth.yx).all()  # every true column
    assert 0.2 < m.fraction < 0.8
    assert not m.mask[:8, :8].any() and not m.mask[-8:, -8:].any()  # the corners are vacuum


@pytest.mark.parametrize("graphene_layers", [0, 1])
def test_f1_unchanged_on_in_domain_series(graphene_layers):
    """The mask removes no true column: atomic F1 within 0.005 with and without it."""
    import napari_hrtem as hrtem

    sim = hrtem.simulate(size=128, sampling=0.22, graphene_layers=graphene_layers, phonon_configs=2, seed=5)
    with_mask = hrtem.predict_consensus(None, sim.series)
    without = hrtem.predict_consensus(None, sim.series, specimen_mask=False)
    assert with_mask.specimen is not None and without.specimen is None
    for name in [*without.results, "consensus"]:
        a = with_mask.consensus if name == "consensus" else with_mask.results[name]
        b = without.consensus if name == "consensus" else without.results[name]
        f1_with, f1_without = (hrtem.score(s, sim.truth)["overall"]["f1"] for s in (a, b))
        assert f1_with >= f1_without - 0.005, name
    assert with_mask.specimen.params["dropped"]["consensus"] <= 1


@needs_realdata
def test_real_frames_keep_no_sites_in_the_vacuum():
    import napari_hrtem as hrtem

    series = hrtem.read_focal_series([REALDATA / f"focal_series_img0{i}.dm3" for i in (7, 8, 9)])
    prediction = hrtem.predict_consensus(None, series)
    vacuum = Polygon(REAL_VACUUM_YX)
    assert int(vacuum.contains_points(prediction.consensus.yx).sum()) <= 2
    for sites in prediction.results.values():
        assert int(vacuum.contains_points(sites.yx).sum()) <= 10
    dropped = prediction.specimen.params["dropped"]
    # every network had sites off the specimen (the 300 kV set: 84-264 of 204-2,870 sites each)
    assert dropped["consensus"] > 20 and all(dropped[name] > 50 for name in prediction.results)
    assert 0.5 < prediction.specimen.fraction < 0.75  # the crystal, less its amorphous rim
    note = [n for n in prediction.notes if n.startswith("dropped ")]
    assert note and "consensus sites outside the specimen" in note[0] and "% of the field" in note[0]


def test_predict_one_network_drops_sites_off_the_specimen(flake):
    import napari_hrtem as hrtem

    kept = hrtem.predict("unet", flake.series)
    every = hrtem.predict("unet", flake.series, specimen_mask=False)
    assert "specimen" in kept.meta and "specimen" not in every.meta
    assert len(kept) == len(every) - kept.meta["specimen"]["dropped"]


def test_cli_writes_the_mask_and_can_turn_it_off(flake, tmp_path, capsys):
    import tifffile

    from napari_hrtem.cli import main
    from napari_hrtem.io.sites import read_csv

    s = flake.series
    frames = s.images.copy()
    frames[:, :40, :] = np.random.default_rng(0).normal(frames.mean(), 0.5 * frames.std(), frames[:, :40, :].shape)
    np.savez(tmp_path / "flake.npz", images=frames, sampling=s.sampling, defocus=s.defocus)
    on, off = tmp_path / "on", tmp_path / "off"
    assert main(["predict", str(tmp_path / "flake.npz"), "--out", str(on)]) == 0
    assert main(["predict", str(tmp_path / "flake.npz"), "--out", str(off), "--no-specimen-mask"]) == 0
    with tifffile.TiffFile(on / "specimen_mask.tif") as tif:
        mask = tif.asarray()
        assert mask.dtype == np.uint8 and mask.shape == s.images.shape[1:] and set(np.unique(mask)) <= {0, 1}
        assert 1e8 / tif.pages[0].resolution[0] == pytest.approx(s.sampling)
    entry = json.loads((on / "predict.json").read_text())["specimen"]
    assert entry["file"] == "specimen_mask.tif" and 0 < entry["fraction"] < 1
    assert entry["signal_threshold"] == 15.0 and set(entry["dropped"]) >= {"consensus"}
    assert json.loads((off / "predict.json").read_text())["specimen"] is None
    assert not (off / "specimen_mask.tif").exists()
    for name in entry["dropped"]:
        n_on, n_off = len(read_csv(on / f"{name}.csv")), len(read_csv(off / f"{name}.csv"))
        assert n_off - n_on == entry["dropped"][name]
    assert "outside the specimen" in capsys.readouterr().err
