"""The Batch widget runs the batch core in a worker: progress bar, Cancel, resume with Run."""

import numpy as np
import pytest
import skimage.data
from PIL import Image

from conftest import fast_tiny
from napari_odise import Predictor
from napari_odise.batch import BatchStore

FAST = {"short_edge": 128, "max_size": 320, "crop_size": 128}


@pytest.fixture(scope="module")
def predictor():
    return Predictor(fast_tiny(), device="cpu")  # the settings of the widget's model_settings = FAST


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(getattr(skimage.data, name)()[::4, ::4]).save(root / f"{name}.png")
    (root / "vocab.txt").write_text("person\ncat\ncup\ngrass (stuff)\n")
    return root


def make_widget(make_napari_viewer, folder, out, direct: bool = False):
    """The Batch widget opened from the Plugins menu, or built directly."""
    from napari_odise._widgets.batch_widget import BatchWidget

    viewer = make_napari_viewer()
    if direct:
        widget = BatchWidget(viewer)
    else:
        _, widget = viewer.window.add_plugin_dock_widget("napari-odise", "Batch")
    widget.model_settings = dict(FAST)
    widget.input_edit.setText(str(folder))
    widget.output_edit.setText(str(out))
    widget.model_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    widget.vocab_combo.setCurrentText(str(folder / "vocab.txt"))
    return widget


def test_widget_runs_cancels_and_resumes(make_napari_viewer, qtbot, folder, tmp_path, predictor):
    out = tmp_path / "out"
    widget = make_widget(make_napari_viewer, folder, out)
    seen = []
    widget._bridge.progress.connect(lambda event: (seen.append(event.done), event.done == 1 and widget.cancel()))
    widget.run()
    assert not widget.run_button.isEnabled() and widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=60000)
    assert widget.summary.cancelled and widget.summary.done == ["astronaut.png"]
    assert "cancelled" in widget.status.text()
    assert seen[:2] == [0, 1]
    widget._bridge.progress.disconnect()
    widget._bridge.progress.connect(widget._show_progress)
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=60000)
    assert widget.summary.skipped == ["astronaut.png"] and widget.summary.done == ["chelsea.png", "coffee.png"]
    assert (widget.progress_bar.value(), widget.progress_bar.maximum()) == (2, 2)
    assert "2 segmented, 1 already done, 0 failed" in widget.status.text()
    store = BatchStore.open(out / "store.zarr")
    assert store.keys() == ["astronaut.png", "chelsea.png", "coffee.png"]
    assert len(store.vocabulary) == 4
    image = np.asarray(Image.open(folder / "coffee.png"))
    expected = predictor.predict(image, store.vocabulary)
    np.testing.assert_array_equal(store.load_result("coffee.png").label_map, expected.label_map)
    assert (out / "overlay" / "coffee.png").is_file()


def test_widget_explains_what_is_missing(make_napari_viewer, qtbot, folder, tmp_path):
    widget = make_widget(make_napari_viewer, folder, tmp_path / "out", direct=True)
    widget.output_edit.setText("")
    widget.run()
    assert widget.worker is None and "output folder" in widget.status.text()
    widget.output_edit.setText(str(tmp_path / "out"))
    widget.input_edit.setText(str(tmp_path / "missing"))
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=30000)
    assert "not found" in widget.status.text()
