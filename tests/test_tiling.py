"""Tiled inference (issue 5 part 6, issue 7): tiles give the untiled result; out of memory halves the tile."""

import itertools

import numpy as np
import pytest

from napari_hrtem.analysis.inference import (
    find_sites,
    predict_probabilities,
    receptive_margin,
    tile_layout,
)


@pytest.mark.parametrize(
    "length, tile, margin, div", [(600, 588, 144, 8), (1000, 300, 40, 1), (4012, 2560, 128, 8), (513, 200, 16, 16)]
)
def test_tile_layout_covers_once(length, tile, margin, div):
    cores = tile_layout(length, tile, margin, div)
    assert cores[0][0] == 0 and cores[-1][1] == length
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cores))
    for s, e in cores:
        assert s % div == 0 and min(e + margin, length) - max(s - margin, 0) <= tile
    with pytest.raises(ValueError, match="no room"):
        tile_layout(length, 2 * margin, margin, div)


@pytest.fixture(scope="module")
def small_net():
    """A small, randomly initialised MSD-net (ours, not a mock): receptive field 2 x 21 px."""
    import torch

    from napari_hrtem.models.registry import build_model

    torch.manual_seed(0)
    return build_model("msdnet", width=2, depth=6, max_dilation=6).eval()


def test_receptive_margin_covers_the_dilations(small_net):
    assert receptive_margin(small_net) >= sum(range(1, 7))  # 1 + 2 + ... + 6 px for 3x3 kernels


def test_tiled_equals_untiled_2d(small_net):
    x = np.random.default_rng(1).normal(size=(3, 230, 190)).astype(np.float32)
    whole = predict_probabilities(small_net, x, tile=512)
    tiled = predict_probabilities(small_net, x, tile=90)  # 4 x 4 tiles
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def _oom(message="CUDA out of memory (simulated)"):
    import torch

    return torch.cuda.OutOfMemoryError(message)


def test_out_of_memory_halves_the_tile_and_goes_on(small_net):
    """A simulated GPU memory ceiling: windows above 130x130 px raise CUDA's out-of-memory error."""
    x = np.random.default_rng(2).normal(size=(3, 400, 360)).astype(np.float32)
    seen = []

    def forward(model, batch):
        h, w = batch.shape[-2:]
        seen.append((h, w))
        if h * w > 130 * 130:
            raise _oom()
        return model(batch)

    whole = predict_probabilities(small_net, x, tile=512)
    with pytest.warns(RuntimeWarning, match="halved"):
        tiled = predict_probabilities(small_net, x, tile=512, forward=forward)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    assert seen[0] == (400, 360)  # the first try was the whole image, then 200 px, then 100 px tiles
    assert max(h * w for h, w in seen[-5:]) <= 130 * 130


def test_out_of_memory_once_then_continues(small_net):
    x = np.random.default_rng(3).normal(size=(3, 120, 120)).astype(np.float32)
    calls = []

    def forward(model, batch):
        calls.append(batch.shape[-1])
        if len(calls) == 1:
            raise _oom()
        return model(batch)

    with pytest.warns(RuntimeWarning, match="halved to 60 px"):
        out = predict_probabilities(small_net, x, forward=forward)
    np.testing.assert_allclose(out, predict_probabilities(small_net, x), atol=1e-5)


def test_out_of_memory_below_the_margins_is_a_clear_error(small_net):
    def forward(model, batch):
        raise _oom()

    x = np.zeros((3, 100, 100), np.float32)
    with pytest.raises(RuntimeError, match="out of memory .* margins"), pytest.warns(RuntimeWarning, match="halved"):
        predict_probabilities(small_net, x, forward=forward)


def test_other_errors_are_not_taken_for_out_of_memory(small_net):
    def forward(model, batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        predict_probabilities(small_net, np.zeros((3, 64, 64), np.float32), forward=forward)


@pytest.mark.parametrize("name", ["unet", "msdnet"])
def test_shipped_networks_tiled_and_untiled_give_the_same_sites(tiny_series, name):
    """Shipped networks on a 160 px high series split into 2 tiles along x: the same sites, none doubled."""
    from napari_hrtem.analysis.inference import prepare_series
    from napari_hrtem.models.registry import available_networks

    net = available_networks()[name]
    model = net.load("cpu")
    margin = receptive_margin(model)  # about 240 px for the 64-layer MSD-net
    core = max(304, 2 * margin + 16)  # each tile's own part: wider than its two margins
    tile = 2 * margin + core  # two tiles along x (the series is wider than one tile), one along y
    width = 2 * core - 8  # 600 px for the U-Net
    images, _, _ = tiny_series
    wide = np.tile(images, (1, 2, -(-width // images.shape[2])))[:, :160, :width]
    x = prepare_series(net.card, wide, net.card.sampling)  # no resampling: keep the test small
    assert len(tile_layout(x.shape[2], tile, margin, model.divisor)) == 2
    whole = predict_probabilities(model, x, tile=1024)
    tiled = predict_probabilities(model, x, tile=tile)
    assert np.abs(tiled - whole).max() < 1e-4
    a = find_sites(whole, net.card.sampling)
    b = find_sites(tiled, net.card.sampling)
    assert len(a) == len(b) > 100
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_allclose(a.yx, b.yx, atol=1e-3)


def test_match_sites_by_groups_equals_one_dense_assignment():
    """match_sites solves each group of nearby sites alone: the same optimum as one dense problem."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial import cKDTree

    from napari_hrtem.analysis.metrics import match_sites

    rng = np.random.default_rng(0)
    a = rng.random((1500, 2)) * 60
    b = np.concatenate([a[:800] + rng.normal(0, 0.3, (800, 2)), rng.random((500, 2)) * 60])
    ia, ib = match_sites(a, b, 0.8)
    dist = cKDTree(a).sparse_distance_matrix(cKDTree(b), 0.8, output_type="coo_matrix").toarray()
    cost = np.where(dist > 0, dist, 1e6)
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] < 1e6
    assert len(ia) == ok.sum() and len(set(ia)) == len(ia) and len(set(ib)) == len(ib)
    assert np.linalg.norm(a[ia] - b[ib], axis=1).sum() == pytest.approx(cost[r[ok], c[ok]].sum())


def test_local_maxima_equals_peak_local_max():
    from scipy.ndimage import gaussian_filter
    from skimage.feature import peak_local_max

    from napari_hrtem.analysis.inference import local_maxima

    rng = np.random.default_rng(0)
    for image in (gaussian_filter(rng.random((300, 280)), 2), rng.random((200, 200)).round(1)):
        for md in (1, 2, 4):
            a = peak_local_max(image, min_distance=md, threshold_abs=0.3, exclude_border=False)
            b = local_maxima(image, md, 0.3)
            assert set(map(tuple, a)) == set(map(tuple, b))
