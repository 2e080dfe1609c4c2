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
    pred.networks.value = ["unet", "unetpp", "msdnet"]
    pred.layer.reset_choices()
    pred.layer.value = "focal series"
    pred.start()
    qtbot.waitUntil(lambda: pred.worker is None, timeout=180_000)
    names = ", ".join(net.name for net in pred.prediction.networks)  # in the widget's order
    assert sorted(names.split(", ")) == ["msdnet", "unet", "unetpp"]
    expected = f"focal series: beam energy 300 kV, but {names} were trained at 50 kV"
    assert f"warning: {expected}" in pred.status.value.splitlines()
    assert pred.prediction.warnings == [expected]
    assert shown == [expected]
