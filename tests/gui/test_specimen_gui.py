"""GUI: the Predict widget shows the specimen mask (run under Xvfb)."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")


def test_predict_widget_adds_the_specimen_mask_layer(make_napari_viewer, qtbot, tiny_series):
    from napari_hrtem.plugin.layers import SPECIMEN, image_layer_data
    from napari_hrtem.plugin.widgets._common import add_layer_tuples
    from napari_hrtem.plugin.widgets.predict import PredictWidget

    images, sampling, _ = tiny_series
    viewer = make_napari_viewer()
    add_layer_tuples(viewer, [image_layer_data(images, sampling, "focal series")])
    predict = PredictWidget(viewer)
    assert predict.specimen.value is True
    predict.networks.value = ["unet"]
    predict.layer.reset_choices()
    predict.layer.value = "focal series"
    predict.start()
    qtbot.waitUntil(lambda: predict.worker is None, timeout=120_000)
    layer = viewer.layers[SPECIMEN]
    assert layer.data.shape == images.shape[1:] and set(np.unique(layer.data)) <= {0, 1}
    assert tuple(layer.scale) == pytest.approx((sampling, sampling)) and layer.opacity < 1
    assert predict.prediction.specimen is not None
