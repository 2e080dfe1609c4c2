"""Evaluation: atomic F1 over samples (pooled, 10th percentile, RMS error), pixel F1 with and
without background (thesis section 4), and `napari-hrtem evaluate` on folders and datasets."""

import json

import numpy as np
import pytest

from napari_hrtem.analysis.metrics import atomic_f1, pixel_counts, summarize
from napari_hrtem.cli import main
from napari_hrtem.io.sites import Sites

TRUTH = np.array([[0, 0], [0, 3], [3, 0], [3, 3], [6, 6]], float)
TRUTH_CLASSES = np.array([0, 1, 1, 2, 0])


def _case():
    """Sample a: 4 TP (one 0.3 Å off), 1 FN, 1 FP (wrong class at (3, 3) counts as FP + FN)."""
    pred_a = np.array([[0.3, 0], [0, 3], [3, 0], [3, 3], [6, 6]], float)
    cls_a = np.array([0, 1, 1, 0, 0])  # (3, 3) predicted Mo but is S
    pred_b = TRUTH[:3]  # sample b: perfect on 3 sites, misses 2
    return (pred_a, cls_a), (pred_b, TRUTH_CLASSES[:3])


def test_atomic_scores_over_samples():
    (pa, ca), (pb, cb) = _case()
    a = atomic_f1(pa, ca, TRUTH, TRUTH_CLASSES, radius=0.5)
    b = atomic_f1(pb, cb, TRUTH, TRUTH_CLASSES, radius=0.5)
    assert (a["overall"]["tp"], a["overall"]["fp"], a["overall"]["fn"]) == (4, 1, 1)
    assert (b["overall"]["tp"], b["overall"]["fp"], b["overall"]["fn"]) == (3, 0, 2)
    s = summarize([a, b])
    assert (s["overall"]["tp"], s["overall"]["fp"], s["overall"]["fn"]) == (7, 1, 3)
    assert s["overall"]["f1"] == pytest.approx(7 / (7 + 0.5 * 4))
    assert s["Mo"]["rms"] == pytest.approx(np.sqrt(0.09 / 3))  # 3 matched Mo, one 0.3 Å off
    assert s["overall"]["rms"] == pytest.approx(np.sqrt(0.09 / 7))
    fa, fb = 4 / (4 + 1), 3 / (3 + 1)
    assert s["f1_p10"] == pytest.approx(np.percentile([fa, fb], 10))
    assert s["samples"] == 2


def test_pixel_f1_with_and_without_background():
    truth = np.array([[0, 0, 3, 3], [1, 1, 3, 3], [3, 3, 2, 3], [3, 3, 3, 3]])
    pred = truth.copy()
    pred[0, 1] = 3  # Mo pixel missed: FN of Mo, FP of background
    pred[3, 3] = 2  # background pixel called S: FP of S, FN of background
    pred[1, 0] = 0  # S2 pixel called Mo: FN of S2, FP of Mo
    with_bg = pixel_counts(pred, truth)
    assert (with_bg["tp"], with_bg["fp"], with_bg["fn"]) == (13, 3, 3)
    assert with_bg["f1"] == pytest.approx(13 / 16)  # = pixel accuracy
    no_bg = pixel_counts(pred, truth, background=False)
    # Mo: TP 1 (0,0), FP 1 (1,0), FN 1 (0,1); S2: TP 1, FN 1; S: TP 1, FP 1
    assert (no_bg["tp"], no_bg["fp"], no_bg["fn"]) == (3, 2, 2)
    assert no_bg["f1"] == pytest.approx(3 / 5)
    probs = np.eye(4)[pred].transpose(2, 0, 1)  # (C, H, W) probabilities: argmax is used
    assert pixel_counts(probs, truth) == with_bg
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_counts(pred[:3], truth)


def test_cli_evaluate_folders(tmp_path, capsys):
    (pa, ca), (pb, cb) = _case()
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir()
    pred.mkdir()
    for name in ("a", "b"):
        Sites(TRUTH, TRUTH_CLASSES, np.ones(5)).write_csv(truth / f"{name}.truth.csv")
    Sites(pa, ca, np.ones(len(pa))).write_csv(pred / "a.csv")
    (pred / "b").mkdir()  # the layout of `napari-hrtem predict --out pred/b`
    Sites(pb, cb, np.ones(len(pb))).write_csv(pred / "b" / "consensus.csv")
    assert main(["evaluate", str(pred), str(truth), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "(2 sample(s))" in out and "10th percentile" in out
    overall = [ln for ln in out.splitlines() if ln.startswith("overall")][0].split()
    assert overall[1:4] == ["7", "1", "3"]
    assert json.loads((tmp_path / "s.json").read_text())["scores"]["overall"]["tp"] == 7
    (pred / "a.csv").unlink()
    assert main(["evaluate", str(pred), str(truth)]) == 2
    assert "no prediction for 1 sample(s)" in capsys.readouterr().err


def test_cli_evaluate_network_on_dataset(tiny_series, tmp_path, capsys):
    from napari_hrtem.analysis.filters import preprocess
    from napari_hrtem.training.datasets import class_map

    images, sampling, sample = tiny_series
    path = tmp_path / "val.npz"
    np.savez(
        path,
        images=preprocess(images, sampling)[None].astype(np.float32),
        labels=class_map(sample.sites, sample.classes, images.shape[1:], sampling)[None],
        sites=sample.sites,
        site_classes=sample.classes,
        site_index=np.array([0, len(sample.sites)]),
        sampling=np.array([sampling]),
        params="[]",
        recipe="{}",
    )
    assert main(["evaluate", "--network", "unet", "--dataset", str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.startswith("pixel F1 with background")][0]
    with_bg = float(line.split()[4])
    line = [ln for ln in out.splitlines() if ln.startswith("pixel F1 without background")][0]
    without = float(line.split()[4])
    assert 0.9 < with_bg <= 1 and 0 < without < with_bg  # the background inflates it (thesis Table 5)
    overall = float([ln for ln in out.splitlines() if ln.startswith("overall")][0].split()[-2])
    assert overall > 0.8
