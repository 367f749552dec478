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


def test_open_a_stored_image_and_accept_a_proposal_in_the_refine_panel(make_napari_viewer, qtbot, folder, tmp_path):
    """After a run, "Open in napari..." adds an image of the store with its labels and the model's
    tensors, from an empty model pool (as in a new napari session): the store's model is loaded in
    a worker; the Refine panel (from the Plugins menu) lists proposals at a click and Enter
    accepts one; a vocabulary change re-labels without the backbone."""
    import threading
    from types import SimpleNamespace

    from napari.utils.interactions import mouse_press_callbacks

    from napari_odise import proposals
    from napari_odise._widgets.session import Session
    from napari_odise.models import ModelSpec
    from napari_odise.pool import ModelPool, set_default_pool
    from napari_odise.vocabulary import Vocabulary

    out = tmp_path / "out"
    widget = make_widget(make_napari_viewer, folder, out)
    viewer = widget.viewer
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=120_000)
    assert [widget.open_combo.itemText(i) for i in range(widget.open_combo.count())] == [
        "astronaut.png", "chelsea.png", "coffee.png"
    ]

    pool, loaders = ModelPool(), []  # what a new session starts with; record where the model loads
    load = pool.get
    pool.get = lambda spec: loaders.append(threading.current_thread()) or load(spec)
    set_default_pool(pool)
    widget.open_combo.setCurrentText("coffee.png")
    widget.open_button.click()
    qtbot.waitUntil(lambda: "coffee.png panoptic" in viewer.layers, timeout=120_000)
    assert loaders and all(thread is not threading.main_thread() for thread in loaders)
    predictor = pool.peek(ModelSpec("tiny", "cpu"))
    assert predictor is not None
    store = BatchStore.open(out / "store.zarr")
    stored = store.load_result("coffee.png")
    image, layer = viewer.layers["coffee.png"], viewer.layers["coffee.png panoptic"]
    np.testing.assert_array_equal(image.data, np.asarray(Image.open(folder / "coffee.png")))
    np.testing.assert_array_equal(layer.data, stored.label_map)
    assert layer.features.set_index("index").loc[stored.segments["id"], "category"].tolist() == (
        stored.segments["category"].tolist()
    )

    _, refine = viewer.window.add_plugin_dock_widget("napari-odise", "Refine segments")
    viewer.layers.selection.active = layer
    picker, state = refine.proposals, refine.state
    result = state.model_results[()]
    assert result.encoded is not None and result.vocabulary == store.vocabulary
    qtbot.waitUntil(lambda: not picker.preparing, timeout=60_000)
    height, width = layer.data.shape
    spots = [(y, x) for y in range(4, height, 9) for x in range(4, width, 9)]
    y, x = next(p for p in spots if proposals.proposals_at(predictor, result, *p, store.vocabulary))
    expected = proposals.proposals_at(predictor, result, y, x, store.vocabulary)
    refine.pick_mode()
    mouse_press_callbacks(layer, SimpleNamespace(  # a plain left click at (y, x), as the canvas sends it
        type="mouse_press", is_dragging=False, position=(y, x), view_direction=None,
        dims_displayed=[0, 1], dims_point=(y, x), modifiers=[], button=1, handled=False,
    ))
    assert [p.query for p in picker.proposals] == [p.query for p in expected]

    before, encodes = np.array(layer.data), predictor.encode_calls
    viewer.window._qt_viewer._key_map_handler.press_key("Enter")
    chosen = expected[0]
    mask = proposals.proposal_mask(predictor, result, chosen)
    new_id = int(layer.data[y, x])
    under = before == before[y, x]
    np.testing.assert_array_equal(layer.data[~(mask | under)], before[~(mask | under)])
    assert (layer.data[mask] == new_id).all() and (layer.data[under & ~mask] == 0).all()
    row = state.table[state.table["id"] == new_id].iloc[0]
    assert (row["category"], row["area"], row["source"]) == (chosen.category.name, mask.sum(), "edited")

    _, segment = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
    segment.image_combo.setCurrentText("coffee.png")
    animals = Vocabulary.parse("cat\ndog\ncup\ntable (stuff)")
    animals.save(tmp_path / "animals.txt")
    Session.of(viewer).vocabulary.load(tmp_path / "animals.txt")  # the Segment widget re-labels the layer
    qtbot.waitUntil(lambda: state.vocabulary == animals and not segment.busy, timeout=60_000)
    assert state.model_results[()].vocabulary == animals and predictor.encode_calls == encodes  # no backbone
    assert (layer.data[mask] == new_id).all()  # the accepted (edited) segment stays
    qtbot.waitUntil(lambda: not picker.preparing, timeout=60_000)  # built again for the new categories
    picker.propose((), y, x)
    assert picker.proposals and {p.category.name for p in picker.proposals} <= set(animals.names)
