"""The Export widget's quality numbers in a real (headless) viewer, opened from the Plugins menu:
a layer segmented by the tiny model keeps the model's output (once, not per edit), the widget
shows PQ/SQ/RQ 100 before any edit and the recount after one, the export writes the same numbers
into the manifest, and a rerun makes its output the new reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fast_tiny
from napari.layers import Layer
from synthetic_scenes import scene, VOCABULARY

from napari_odise import Predictor
from napari_odise._widgets.export_widget import NO_MODEL_OUTPUT, quality_text
from napari_odise._widgets.gl_compat import guard_triton
from napari_odise._widgets.session import Session
from napari_odise.io.layers import METADATA_KEY, MODEL_OUTPUT_KEY, labels_layer_data, layer_quality
from napari_odise.io.layout import DatasetLayout
from napari_odise.io.stable_json import read_json
from napari_odise.models import ModelSpec
from napari_odise.quality import compare

SIZE = 64


@pytest.fixture(scope="module")
def predictor():
    guard_triton()  # a viewer made by an earlier test module must not meet Triton (see gl_compat)
    return Predictor(fast_tiny(short_edge=SIZE, crop_size=SIZE), device="cpu")


def segmented(make_napari_viewer, predictor, qtbot):
    viewer = make_napari_viewer()
    session = Session.of(viewer)
    session.pool.put(ModelSpec("tiny", "cpu"), predictor)
    _, segment = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
    _, widget = viewer.window.add_plugin_dock_widget("napari-odise", "Export dataset")
    segment.model_combo.setCurrentText("tiny")
    segment.device_combo.setCurrentText("cpu")
    segment.settings_combo.setCurrentText("demo")  # random weights keep several segments so
    viewer.add_image(scene(3, SIZE)[0], name="scene", rgb=True)
    segment.run_button.click()
    qtbot.waitUntil(lambda: not segment.busy, timeout=30_000)
    return viewer, session, segment, widget


def kept_output(layer):
    return layer.metadata[METADATA_KEY][MODEL_OUTPUT_KEY][()]


def test_numbers_follow_edits_and_go_into_the_manifest(make_napari_viewer, predictor, qtbot, tmp_path):
    viewer, session, segment, widget = segmented(make_napari_viewer, predictor, qtbot)
    layer = viewer.layers["scene panoptic"]
    state = session.state(layer)
    kept = kept_output(layer)
    assert kept.label_map.dtype == np.uint8 and np.array_equal(kept.label_map, layer.data)
    categories = state.table["category_id"].nunique()
    qtbot.waitUntil(lambda: widget.quality.text().startswith("Changes from the model's output"), timeout=5_000)
    lines = widget.quality.text().splitlines()
    assert lines[0] == "Changes from the model's output (100 = none):"
    assert lines[2].split() == ["all", "100.0", "100.0", "100.0", str(categories)]

    first = int(state.table["id"].iloc[0])
    layer.brush_size = 7
    layer.paint((8, 8), first)  # a correction: pixels of neighbouring segments become `first`'s
    # the same count made here from the layer's pixels and table and the model's kept output
    table = state.table
    things = {c.id: c.isthing for c in VOCABULARY}
    expected = compare(np.asarray(layer.data), dict(zip(table["id"], table["category_id"])), kept, things)
    assert expected.scores("all").pq < 1.0
    qtbot.waitUntil(lambda: widget.quality.text() == quality_text(expected), timeout=5_000)
    assert kept_output(layer) is kept  # the edit did not copy the model's output

    widget.folder.setText(str(tmp_path / "dataset"))
    widget.export_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    (record,) = read_json(DatasetLayout(tmp_path / "dataset").manifest)["images"]
    assert record["quality"] == expected.to_json()

    segment.run_button.click()  # a rerun: its output becomes the reference
    qtbot.waitUntil(lambda: not segment.busy, timeout=30_000)
    assert kept_output(layer) is not kept and state.model_outputs[()] is kept_output(layer)
    qtbot.waitUntil(
        lambda: widget.quality.text() == quality_text(layer_quality(layer.data, layer.features, layer.metadata)),
        timeout=5_000,
    )


def test_a_layer_opened_from_a_file_has_nothing_to_compare(make_napari_viewer, predictor, qtbot):
    viewer, session, segment, widget = segmented(make_napari_viewer, predictor, qtbot)
    result = session.state(viewer.layers["scene panoptic"]).result()
    viewer.layers.clear()
    viewer.add_layer(Layer.create(*labels_layer_data(result, "opened")))
    assert widget.labels_combo.currentText() == "opened"
    assert widget.quality.text() == NO_MODEL_OUTPUT
