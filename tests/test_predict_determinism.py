"""Determinism: the same focal series gives bit-identical probabilities and sites on CPU.

(The seeded simulation's determinism is tested in tests/test_imaging.py, training's by the trainer's tests.)
"""

import numpy as np


def _blobs(n=3, size=96, sampling=0.22, seed=0):
    """A focal series of Gaussian blobs on a 3.16 Å hexagonal lattice (cheap stand-in for columns)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] * sampling
    a = 3.16
    out = np.zeros((n, size, size), np.float32)
    for i in range(-2, int(size * sampling / a) + 3):
        for j in range(-2, int(size * sampling / a) + 3):
            y, x = j * a * np.sqrt(3) / 2, i * a + j * a / 2
            out += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 0.3)[None] * np.array([1.0, 0.8, 0.6])[:n, None, None]
    return out + 0.05 * rng.standard_normal(out.shape).astype(np.float32), sampling


def test_prediction_is_bit_identical_on_cpu():
    import torch

    from napari_hrtem.analysis.inference import predict_sites
    from napari_hrtem.models.registry import available_networks

    images, sampling = _blobs()
    torch.set_num_threads(1)
    net = available_networks()["unet"]
    model = net.load("cpu")
    (s1, p1), (s2, p2) = (predict_sites(net, images, sampling, model=model) for _ in range(2))
    (s3, p3) = predict_sites(net, images, sampling, device="cpu")  # freshly loaded weights
    for s, p in ((s2, p2), (s3, p3)):
        assert np.array_equal(p1, p)
        assert np.array_equal(s1.yx, s.yx) and np.array_equal(s1.classes, s.classes)
        assert np.array_equal(s1.confidence, s.confidence)
