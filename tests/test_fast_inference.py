"""Inference-only networks (issue 16 item 2): float32 equals the plain model; bfloat16 sites within the tolerance."""

import json

import numpy as np
import pytest
import torch

from napari_hrtem.analysis.inference import (
    agreement_within,
    predict_probabilities,
    predict_sites,
    prepare_series,
    site_agreement,
)
from napari_hrtem.models.fast import BF16_TOLERANCE, choose_precision, inference_model
from napari_hrtem.models.registry import available_networks, build_model

SHIPPED = ("unet", "unetpp", "msdnet")


def _randomize_batch_norms(model, seed=0):
    """Running statistics and affine parameters far from their defaults (folding must use them)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                m.weight.copy_(torch.randn(n, generator=generator))
                m.bias.copy_(torch.randn(n, generator=generator) * 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def prepared(tiny_series):
    images, sampling, _ = tiny_series
    card = available_networks()["unet"].card
    return prepare_series(card, images, sampling)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_float32_equals_plain(name, prepared):
    plain = available_networks()[name].load("cpu")
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    fast = inference_model(plain, "float32")
    assert fast.precision == "float32" and fast.divisor == plain.divisor
    np.testing.assert_allclose(
        predict_probabilities(fast, prepared), predict_probabilities(plain, prepared), rtol=0, atol=1e-4
    )
    after = plain.state_dict()  # the plain model (training uses it) is not changed
    assert all(torch.equal(before[k], after[k]) for k in before) and not plain.training


@pytest.mark.parametrize(
    "architecture, config, shape",
    [
        ("unet", dict(base_channels=4, depth=2), (3, 36, 44)),
        ("unetpp", dict(base_channels=4, depth=2), (3, 28, 20)),
        ("unet", dict(base_channels=3, depth=1), (2, 18, 22)),
        ("msdnet", dict(width=1, depth=7, max_dilation=3), (3, 37, 45)),
        ("msdnet", dict(width=2, depth=9, max_dilation=4), (3, 33, 29)),
        ("msdnet", dict(width=2, depth=5, max_dilation=10, kernel_size=5), (2, 41, 23)),
        ("msdnet", dict(width=3, depth=4, max_dilation=2), (1, 17, 19)),
    ],
)
def test_random_small_models_float32_equal_plain(architecture, config, shape):
    torch.manual_seed(1)
    model = _randomize_batch_norms(build_model(architecture, n_images=shape[0], n_classes=4, **config))
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(2, *shape)).astype(np.float32))
    fast = inference_model(model, "float32")
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(  # through the tiles (reflect padding to the divisor, margins)
        predict_probabilities(fast, x[0].numpy(), tile=4096),
        predict_probabilities(model, x[0].numpy(), tile=4096),
        atol=1e-4,
    )


def test_fast_model_tiles_and_out_of_memory_halving():
    """The fast model goes through tiles, margins (measured on the plain model) and the tile halving."""
    torch.manual_seed(0)
    plain = build_model("msdnet", width=2, depth=6, max_dilation=6).eval()
    fast = inference_model(plain, "float32")
    x = np.random.default_rng(2).normal(size=(3, 300, 260)).astype(np.float32)
    whole = predict_probabilities(plain, x, tile=512)

    def forward(model, batch):
        if batch.shape[-2] * batch.shape[-1] > 130 * 130:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return model(batch)

    with pytest.warns(RuntimeWarning, match="halved"):
        tiled = predict_probabilities(fast, x, tile=512, forward=forward)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


@pytest.mark.parametrize("name", SHIPPED)
def test_bfloat16_sites_within_tolerance(name, tiny_series):
    images, sampling, _ = tiny_series
    net = available_networks()[name]
    model = net.load("cpu")
    reference, _ = predict_sites(net, images, sampling, model=model, precision="float32")
    sites, _ = predict_sites(net, images, sampling, model=model, precision="bfloat16")
    assert reference.meta["precision"] == "float32" and sites.meta["precision"] == "bfloat16"
    ok, figures = agreement_within(reference, sites)
    assert ok, (figures, BF16_TOLERANCE)
    assert figures["n_reference"] > 100
    # and the new float32 path gives the old path's sites
    old = predict_probabilities(model, prepare_series(net.card, images, sampling))
    from napari_hrtem.analysis.inference import find_sites, network_threshold

    old_sites = find_sites(old, net.card.sampling, threshold=network_threshold(net.card))
    assert site_agreement(old_sites, reference, 0.01)["f1"] == 1.0


def test_agreement_within_detects_a_difference(tiny_series):
    images, sampling, _ = tiny_series
    net = available_networks()["unet"]
    sites, _ = predict_sites(net, images, sampling, precision="float32")
    assert agreement_within(sites, sites) == (True, {**site_agreement(sites, sites, 0.5), "f1_fine": 1.0})
    fewer = sites.take(np.arange(len(sites)) % 10 != 0)  # a tenth of the sites missing
    assert not agreement_within(sites, fewer)[0]
    moved = sites.take(np.ones(len(sites), bool))
    moved.yx = np.asarray(moved.yx) + 0.2  # every site 0.28 Å away
    ok, figures = agreement_within(sites, moved)
    assert not ok and figures["f1_fine"] == 0.0


@pytest.mark.parametrize(
    "precision, device, native, expected",
    [
        ("auto", "cpu", False, "float32"),  # emulated bfloat16 is slower than float32
        ("auto", "cpu", True, "bfloat16"),
        ("auto", "cuda", True, "bfloat16"),
        ("auto", "cuda", False, "float32"),
        ("auto", "mps", True, "float32"),
        ("float32", "cpu", True, "float32"),
        ("bfloat16", "cpu", False, "bfloat16"),  # asked for: kept
    ],
)
def test_choose_precision(precision, device, native, expected):
    assert choose_precision(precision, device, native) == expected


def test_bad_precision_is_refused_before_any_work(tiny_series):
    images, sampling, _ = tiny_series
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16"):
        choose_precision("float16", "cpu", True)
    with pytest.raises(ValueError, match="precision"):
        predict_sites(available_networks()["unet"], images, sampling, precision="half")
    with pytest.raises(ValueError, match="eval mode"):
        inference_model(build_model("unet").train(), "float32")


def test_cli_predict_precision(tiny_series, tmp_path, capsys):
    from napari_hrtem.cli import main

    images, sampling, _ = tiny_series
    path = tmp_path / "series.npy"
    np.save(path, images)
    out = tmp_path / "out"
    assert main(["predict", str(path), "--sampling", str(sampling), "--networks", "unet", "msdnet",
                 "--precision", "float32", "--out", str(out)]) == 0  # fmt: skip
    sidecar = json.loads((out / "predict.json").read_text())
    assert {n["precision"] for n in sidecar["networks"].values()} == {"float32"}
    capsys.readouterr()
    assert main(["predict", str(path), "--sampling", str(sampling), "--precision", "half", "--out", str(out)]) == 2
    assert "precision" in capsys.readouterr().err


def test_cublas_and_cudnn_allocation_failures_count_as_out_of_memory():
    """The tile halving also catches a GPU library that cannot allocate its workspace."""
    from napari_hrtem.models.registry import is_out_of_memory

    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert not is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED"))


def _one_symmetry(model, x, k, mirror):
    t = torch.rot90(x, k, (-2, -1))
    out = model(t.flip(-1) if mirror else t)
    return torch.rot90(out.flip(-1) if mirror else out, -k, (-2, -1))


@pytest.mark.parametrize(
    "architecture, config", [("unet", dict(base_channels=4, depth=2)), ("msdnet", dict(width=2, depth=6))]
)
def test_symmetrized_model_averages_the_8_symmetries_and_is_equivariant(architecture, config):
    """Test-time augmentation: the mean of the 8 transformed passes, so a rotated or mirrored
    input gives the rotated or mirrored output."""
    from napari_hrtem.models.fast import SYMMETRIES, symmetrized

    torch.manual_seed(0)
    fast = inference_model(build_model(architecture, **config).eval(), "float32")
    tta = symmetrized(fast)
    assert symmetrized(tta) is tta and tta.divisor == fast.divisor and tta.precision == "float32"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y = tta(x)
        by_hand = sum(_one_symmetry(fast, x, k, m) for k, m in SYMMETRIES) / 8
        torch.testing.assert_close(y, by_hand, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(tta(torch.rot90(x, 1, (-2, -1))), torch.rot90(y, 1, (-2, -1)), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(tta(x.flip(-2)), y.flip(-2), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(fast(torch.rot90(x, 1, (-2, -1))), torch.rot90(fast(x), 1, (-2, -1)), atol=1e-3)


def test_test_time_augmentation_runs_through_the_api_and_cli(tiny_series, tmp_path, capsys):
    import napari_hrtem as hrtem
    from napari_hrtem.cli import main

    images, sampling, sample = tiny_series
    plain = hrtem.predict("unet", images, sampling=sampling, precision="float32")
    tta = hrtem.predict("unet", images, sampling=sampling, precision="float32", test_time_augmentation=True)
    assert tta.meta["test_time_augmentation"] and not plain.meta["test_time_augmentation"]
    agreement = site_agreement(plain, tta, radius=0.5)
    assert agreement["f1"] > 0.95 and agreement["same_class"] > 0.95  # the same columns, a few changed
    true_sites = hrtem.Sites(np.asarray(sample.sites), np.asarray(sample.classes), np.ones(len(sample.sites)))
    truth = hrtem.score(tta, true_sites)["overall"]["f1"]
    assert truth > 0.9
    path = tmp_path / "series.npz"
    np.savez(path, images=np.asarray(images), sampling=sampling)
    assert main(["predict", str(path), "--networks", "unet", "--tta", "--out", str(tmp_path / "out")]) == 0
    recorded = json.loads((tmp_path / "out" / "predict.json").read_text(encoding="utf-8"))["networks"]["unet"]
    assert recorded["test_time_augmentation"] is True
