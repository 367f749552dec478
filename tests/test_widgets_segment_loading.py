"""Before and during model loading (issue 16 items 9 and 10): missing weights are named before
Run with the command that gets them; loading shows a busy bar; Cancel while loading returns at
once (the load finishes in the background and the next Run uses it); a finished run ends full."""

import threading
import time

import numpy as np
import pytest
import skimage.data
from conftest import fast_tiny

from napari_odise import Predictor
from napari_odise._widgets.gl_compat import guard_triton
from napari_odise.pool import ModelPool, set_default_pool


@pytest.fixture(scope="module")
def predictor():
    guard_triton()
    return Predictor(fast_tiny(), device="cpu")


def open_segment(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
    viewer.add_image(skimage.data.astronaut()[::4, ::4], name="astronaut", rgb=True)
    return widget


def test_missing_official_weights_are_named_before_run_with_the_fix_and_tiny_offered(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = open_segment(viewer)
    assert widget.model_combo.currentText() == "official"
    note = widget.weights_note.text()
    for filename in ("odise_label_coco_50e-b67d2efc.pth", "sd-v1-3.ckpt", "ViT-L-14-336px.pt"):
        assert filename in note
    assert "napari-odise weights download --model official" in note and "'tiny'" in note
    assert not widget.weights_note.isHidden() and not widget.use_tiny.isHidden()
    widget.run_button.click()
    assert not widget.busy and "panoptic" not in " ".join(layer.name for layer in viewer.layers)
    assert widget.status.text().startswith("not started: the model's weights are missing")
    widget.use_tiny.click()
    assert widget.model_combo.currentText() == "tiny"
    assert widget.weights_note.isHidden() and widget.use_tiny.isHidden()


def test_loading_is_busy_cancel_returns_at_once_and_the_next_run_uses_the_loaded_model(
    make_napari_viewer, predictor, qtbot
):
    release, loads = threading.Event(), []

    def slow_loader(spec):  # a load that reports nothing until it is done, like the official one
        loads.append(spec)
        release.wait(60)
        return predictor

    set_default_pool(ModelPool(slow_loader))
    viewer = make_napari_viewer()
    widget = open_segment(viewer)
    widget.model_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    widget.settings_combo.setCurrentText("demo")
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.progress_bar.maximum() == 0, timeout=10_000)  # busy indicator
    assert widget.status.text() == "loading the model..."
    started = time.monotonic()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=5_000)
    assert time.monotonic() - started < 3
    assert widget.status.text().startswith("cancelled: nothing was changed")
    assert "background" in widget.status.text() and widget.run_button.isEnabled()
    assert (widget.progress_bar.maximum(), widget.progress_bar.value()) == (1000, 0)
    release.set()
    qtbot.waitUntil(lambda: not widget._job.running, timeout=10_000)
    assert "astronaut panoptic" not in viewer.layers  # the dropped run changed nothing

    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert len(loads) == 1 and "astronaut panoptic" in viewer.layers
    assert widget.status.text() == "done" and widget.progress_bar.value() == 1000
    assert np.asarray(viewer.layers["astronaut panoptic"].data).max() > 0
