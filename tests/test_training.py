"""Trainer: loss goes down, seeded runs are bit-identical, checkpoints resume exactly (also after
SIGKILL), DDP on 2 gloo processes, and a batch too large for memory is explained."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_hrtem.training.trainer import BatchTooLargeError, read_checkpoint, train

SRC = str(Path(__file__).resolve().parents[1] / "src")
UNET = dict(base_channels=4, depth=2)


@pytest.fixture(scope="module")
def small_set(tiny_series):
    """Four 48x48 crops of the tiny simulated focal series (preprocessed) with their class maps."""
    from napari_hrtem.analysis.filters import preprocess
    from napari_hrtem.training.datasets import class_map

    images, sampling, sample = tiny_series
    x = preprocess(images, sampling)
    y = class_map(sample.sites, sample.classes, images.shape[1:], sampling)
    crops = [(0, 0), (0, 64), (64, 0), (64, 64)]
    return dict(
        images=np.stack([x[:, a : a + 48, b : b + 48] for a, b in crops]).astype(np.float32),
        labels=np.stack([y[a : a + 48, b : b + 48] for a, b in crops]),
    )


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _run(data, **kwargs):
    kwargs = dict(dict(steps=12, batch_size=2, config=UNET, log_every=1, seed=3), **kwargs)
    return list(train("unet", data, **kwargs))


@pytest.mark.parametrize(
    "architecture, config, options",
    [
        ("unet", UNET, {}),
        ("msdnet", dict(width=2, depth=8, kernel_size=3), dict(optimizer="rmsprop", lr=5e-3)),
        ("unet", UNET, dict(loss="mse", lr=5e-3)),
    ],
)
def test_short_training_lowers_the_loss(small_set, architecture, config, options):
    torch.set_num_threads(1)
    events = list(train(architecture, small_set, steps=30, batch_size=4, config=config, log_every=10, **options))
    losses = [e["loss"] for e in events if "loss" in e]
    assert len(losses) == 3 and losses[-1] < 0.9 * losses[0], losses


def test_seeded_training_is_bit_identical_and_resumes_exactly(small_set, tmp_path):
    torch.set_num_threads(1)
    full = _run(small_set)
    again = _run(small_set)
    a, b = _weights(full[-1]["model"]), _weights(again[-1]["model"])
    assert all(torch.equal(a[k], b[k]) for k in a)

    # Interrupted after the checkpoint of step 8 (the generator is simply dropped) ...
    ckpt = tmp_path / "ck"
    seen = []
    for event in train(
        "unet",
        small_set,
        steps=12,
        batch_size=2,
        config=UNET,
        log_every=1,
        seed=3,
        checkpoint_dir=ckpt,
        checkpoint_every=4,
    ):
        seen.append(event["step"])
        if event["step"] == 9:
            break
    assert read_checkpoint(ckpt)["step"] == 8
    # ... then resumed: the same steps, losses and bit-identical weights as without interruption.
    rest = _run(small_set, checkpoint_dir=ckpt, checkpoint_every=4, resume=True)
    assert rest[0]["resumed_from"] == 8
    assert [e["step"] for e in rest if "loss" in e] == [9, 10, 11, 12]
    assert [e["loss"] for e in rest if "loss" in e] == [e["loss"] for e in full if "loss" in e][8:]
    c = _weights(rest[-1]["model"])
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert not list(ckpt.glob(".*tmp"))
    with pytest.raises(ValueError, match="other settings: lr"):
        next(
            train(
                "unet",
                small_set,
                steps=12,
                batch_size=2,
                config=UNET,
                lr=1e-3,
                seed=3,
                checkpoint_dir=ckpt,
                resume=True,
            )
        )


def _write_npz(path, data):
    np.savez(
        path,
        images=data["images"],
        labels=data["labels"],
        sites=np.zeros((0, 2)),
        site_classes=np.zeros(0, int),
        site_index=np.zeros(len(data["images"]) + 1, int),
        sampling=np.full(len(data["images"]), 0.22),
        params="[]",
        recipe=json.dumps({"test": True}),
    )


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    return [
        sys.executable,
        "-m",
        "napari_hrtem.cli",
        "train",
        "--architecture",
        "unet",
        "--set",
        "base_channels=4",
        "--set",
        "depth=2",
        "--batch-size",
        "2",
        "--seed",
        "5",
        "--threads",
        "1",
        "--log-every",
        "1",
        *map(str, args),
    ], env


def test_sigkilled_training_resumes_from_its_last_checkpoint(small_set, tmp_path):
    data = tmp_path / "train.npz"
    _write_npz(data, small_set)
    cmd, env = _cli("--dataset", data, "--steps", 16, "--checkpoint-every", 3, "--out", tmp_path, "--name", "n")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    saved = 0
    for line in proc.stdout:
        step = int(line.split()[1].split("/")[0])
        if "checkpoint saved" in line:
            saved = step
        if step >= 8:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = read_checkpoint(tmp_path / "n.checkpoint")  # loads: not corrupt
    assert state["step"] % 3 == 0 and saved <= state["step"] <= 8
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, check=True).stdout
    assert f"resumed from the checkpoint of step {state['step']}" in resumed
    assert resumed.splitlines()[0].startswith(f"step {state['step'] + 1}/16")
    # The same run uninterrupted (in this process, 1 thread as in the CLI): bit-identical weights.
    from napari_hrtem.training.datasets import load_dataset

    torch.set_num_threads(1)
    events = list(train("unet", load_dataset(data), steps=16, batch_size=2, seed=5, config=UNET))
    a = torch.load(tmp_path / "n.pt", weights_only=True)
    b = events[-1]["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_two_gloo_processes(small_set, tmp_path):
    data = tmp_path / "train.npz"
    _write_npz(data, small_set)
    cmd, env = _cli("--dataset", data, "--steps", 6, "--out", tmp_path, "--name", "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", *cmd[2:]]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "DDP: 2 processes, parameters identical on all of them" in out.stdout
    assert out.stdout.count("step 6/6") == 1  # rank 0 reports, rank 1 is silent
    card = json.loads((tmp_path / "ddp.json").read_text())
    assert card["training"]["processes"] == 2


OOM_SCRIPT = """
import resource, sys
import numpy as np, torch
from napari_hrtem.training.trainer import BatchTooLargeError, train
torch.set_num_threads(1)
rng = np.random.default_rng(0)
data = dict(images=rng.normal(size=(4, 3, 64, 64)).astype(np.float32), labels=rng.integers(0, 4, (4, 64, 64)))
vm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize')][0] * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 400 * 2**20, vm + 400 * 2**20))
try:
    list(train('msdnet', data, steps=1, batch_size=256, config=dict(width=4, depth=20)))
except BatchTooLargeError as exc:
    print(exc)
"""


def test_a_batch_too_large_for_memory_names_the_largest_that_fits():
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(
        [sys.executable, "-c", OOM_SCRIPT], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    message = out.stdout.strip()
    assert "a training batch of 256 focal series (3, 64, 64) does not fit in the memory of cpu" in message, out.stderr[
        -2000:
    ]
    fits = int(message.split("largest batch that fits is ")[1].split()[0])
    assert 1 <= fits <= 128
    assert issubclass(BatchTooLargeError, ValueError)  # the CLI prints it as one error line


def test_training_from_an_exit_wave_bank(tiny_sample, tiny_wave):
    """Every batch gets fresh microscope parameters: no dataset, only the bank."""
    from napari_hrtem.training.datasets import class_map
    from napari_hrtem.training.trainer import exit_wave_bank

    labels = class_map(tiny_sample.sites, tiny_sample.classes, (128, 128), 0.22)
    synthesize = exit_wave_bank([dict(wave=tiny_wave, sampling=0.22, labels=labels)])
    a, la = synthesize(2, np.random.default_rng(0))
    assert a.shape == (2, 3, 128, 128) and a.dtype == np.float32 and la.shape == (2, 128, 128)
    assert not np.allclose(a[0], a[1])  # two microscopes
    events = list(train("unet", None, synthesize=synthesize, steps=2, batch_size=1, config=UNET, log_every=1))
    assert events[-1]["done"] and [e["step"] for e in events if "loss" in e] == [1, 2]


def test_training_can_start_from_given_weights(small_set):
    """Fine-tuning starts from a network's weights: with a vanishing learning rate they stay."""
    from napari_hrtem.models.registry import build_model

    torch.manual_seed(123)
    start = build_model("unet", **UNET).state_dict()
    *_, last = _run(small_set, steps=2, lr=1e-12, initial_state=start)
    for key, value in _weights(last["model"]).items():
        if value.is_floating_point() and "running" not in key:
            torch.testing.assert_close(value, start[key], rtol=0, atol=1e-6)


def test_an_exit_wave_bank_images_each_store_at_its_energy_with_its_ranges(tiny_sample, tiny_wave):
    """Waves of two stores (50 and 300 keV, Table 1 and a wide blur) share one bank: every series is
    made at its wave's energy from its own ranges, in the proportion of the waves."""
    from dataclasses import replace

    from napari_hrtem.simulation.parameters import load_parameter_ranges
    from napari_hrtem.training.datasets import class_map
    from napari_hrtem.training.trainer import exit_wave_bank

    labels = class_map(tiny_sample.sites, tiny_sample.classes, (128, 128), 0.22)
    blurred = load_parameter_ranges()
    blurred["microscope"].update(blur=[1.5, 1.5], log10_dose=[5.0, 5.0], energy=300e3)
    other = np.full_like(labels, labels.max())  # background only: marks the series of the second store
    bank = [
        dict(wave=tiny_wave, labels=labels),
        dict(wave=replace(tiny_wave, energy=300e3), labels=other, ranges=blurred),
    ]
    synthesize = exit_wave_bank(bank)
    images, la = synthesize(16, np.random.default_rng(3))
    assert images.shape == (16, 3, 128, 128) and la.shape == (16, 128, 128)
    second = np.array([np.all(x == labels.max()) for x in la])
    assert 0 < second.sum() < 16  # both stores drawn

    def fine_detail(im):  # share of the spectrum beyond 1 Å⁻¹: after a 1.5 Å blur only white readout
        # noise is left there, and the local normalization brings it up to the image's contrast
        f = np.abs(np.fft.fft2(im - im.mean())) ** 2
        k = np.hypot(*np.meshgrid(np.fft.fftfreq(128, 0.22), np.fft.fftfreq(128, 0.22)))
        return f[k > 1.0].sum() / f.sum()

    detail = np.array([fine_detail(x[0]) for x in images])
    assert detail[second].min() > 5 * detail[~second].max()
    again, _ = exit_wave_bank(bank)(16, np.random.default_rng(3))
    np.testing.assert_array_equal(images, again)  # reproducible from the rng
