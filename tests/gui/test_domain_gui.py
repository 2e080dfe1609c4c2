"""GUI: the Predict widget says when the input lies outside the networks' training domain (issue #12)."""

import pytest

napari = pytest.importorskip("napari")


def test_predict_widget_warns_of_a_300_kv_series(make_napari_viewer, qtbot, monkeypatch):
    import napari.utils.notifications

    import napari_hrtem as hrtem
    from napari_hrtem.plugin.simulate import simulation_layers
    from napari_hrtem.plugin.widgets.predict import PredictWidget

    shown = []
    monkeypatch.setattr(napari.utils.notifications, "show_warning", shown.append)
    sim = hrtem.simulate(
        size=96, sampling=0.22, microscope=hrtem.MicroscopeParameters(energy=300e3), phonon_configs=1, seed=2
    )
    viewer = make_napari_viewer()
    for data, kwargs, kind in simulation_layers(sim):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    pred = PredictWidget(viewer)
    pred.layer.reset_choices()
    pred.layer.value = "focal series"
    # choosing the series ticks the shipped set for its 300 kV; the user may still run others
    from napari_hrtem.models.registry import shipped_networks

    assert sorted(pred.networks.value) == sorted(n.name for n in shipped_networks(300e3))
    assert pred.status.value.startswith("beam energy 300 kV: ticked ")
    pred.networks.value = ["unet", "unetpp", "msdnet"]
    pred.start()
    qtbot.waitUntil(lambda: pred.worker is None, timeout=180_000)
    names = [net.name for net in pred.prediction.networks]  # in the widget's order
    assert sorted(names) == ["msdnet", "unet", "unetpp"]
    # one warning per trained energy range: the U-Net at 50-80 kV, the U-Net++ and the MSD-net at 50 kV
    by_range: dict[str, list[str]] = {}
    for net in pred.prediction.networks:
        low, high = net.card.domain.energy
        by_range.setdefault(f"{low:g} kV" if low == high else f"{low:g}-{high:g} kV", []).append(net.name)
    expected = [
        f"focal series: beam energy 300 kV, but {', '.join(group)} {'was' if len(group) == 1 else 'were'} "
        f"trained at {label}"
        for label, group in by_range.items()
    ]
    domain = [w for w in pred.prediction.warnings if "own sublattice" not in w]
    assert sorted(domain) == sorted(expected)
    for warning in expected:
        assert f"warning: {warning}" in pred.status.value.splitlines()
    assert sorted(w for w in shown if "own sublattice" not in w) == sorted(expected)
    # like columns side by side (50 kV networks at 300 kV may swap Mo and S2): marked in their own layer
    n = pred.prediction.consensus.meta["sublattice_conflicts"]
    conflicts = viewer.layers["sublattice conflicts"]
    assert len(conflicts.data) == n and conflicts.visible == (n > 0)
    assert sum("own sublattice" in w for w in shown) == (n > 0)


def test_predict_widget_ticks_the_shipped_set_for_each_series_energy(make_napari_viewer):
    """issue 17: the layer's beam energy chooses the shipped networks (the user's own ticks stay)."""
    import numpy as np

    from napari_hrtem.models.registry import shipped_networks
    from napari_hrtem.plugin.widgets.predict import PredictWidget

    viewer = make_napari_viewer()
    images = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)
    viewer.add_image(images, name="at 300 kV", metadata={"energy": 300e3, "sampling": 0.22})
    viewer.add_image(images, name="at 80 kV", metadata={"energy": 80e3, "sampling": 0.22})
    viewer.add_image(images, name="no energy", metadata={"sampling": 0.22})
    viewer.add_image(images, name="at 60 kV", metadata={"energy": 60e3, "sampling": 0.22})
    pred = PredictWidget(viewer)
    pred.layer.reset_choices()
    for name, energy in (("at 80 kV", 80e3), ("at 300 kV", 300e3), ("no energy", None)):
        pred.layer.value = name
        assert sorted(pred.networks.value) == sorted(n.name for n in shipped_networks(energy)), name
    assert pred.status.value.startswith("beam energy unknown (50 kV networks): ticked ")
    # the user's own choice stays while the series' energy picks the same set
    pred.networks.value = ["unet"]
    pred.layer.value = "at 60 kV"
    assert shipped_networks(60e3) == shipped_networks(None) and pred.networks.value == ["unet"]
    pred.layer.value = "at 300 kV"  # another set: ticked
    assert sorted(pred.networks.value) == sorted(n.name for n in shipped_networks(300e3))
