"""The Export widget in a real (headless) viewer: a layer segmented by the tiny model (and edited)
becomes a dataset whose summary the widget shows and whose re-opened labels equal the layer;
name clashes, unassigned segments and wrong images are refused with what to do; stacks give one
image per segmented plane."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fast_tiny
from napari.layers import Layer
from napari.utils.notifications import notification_manager
from synthetic_scenes import VOCABULARY, scene

from napari_odise.models import ModelSpec
from napari_odise import Predictor, Vocabulary
from napari_odise._widgets.dataset_review import describe
from napari_odise._widgets.export_widget import NO_IMAGE, ExportWidget
from napari_odise._widgets.gl_compat import guard_triton
from napari_odise._widgets.layer_state import SegmentationLayer, initial_labels
from napari_odise._widgets.session import Session
from napari_odise.io import open_dataset
from napari_odise.io.images import read_png
from napari_odise.io.layers import labels_layer_data

SIZE = 64


@pytest.fixture(scope="module")
def predictor():
    guard_triton()  # a viewer made by an earlier test module must not meet Triton (see gl_compat)
    # runs with the demo settings: random weights keep several segments with the demo's merge
    return Predictor(fast_tiny(short_edge=SIZE, crop_size=SIZE), device="cpu")


def export_and_wait(widget, qtbot) -> list[str]:
    """Press Export; the notifications it gave."""
    records = len(notification_manager.records)
    widget.export_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    return [record.message for record in notification_manager.records[records:]]


def test_a_segmented_and_edited_layer_exports_summarises_and_reopens_equal(
    make_napari_viewer, predictor, qtbot, tmp_path
):
    viewer = make_napari_viewer()
    session = Session.of(viewer)
    session.pool.put(ModelSpec("tiny", "cpu"), predictor)
    _, segment = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
    _, widget = viewer.window.add_plugin_dock_widget("napari-odise", "Export dataset")
    segment.model_combo.setCurrentText("tiny")
    segment.device_combo.setCurrentText("cpu")
    segment.settings_combo.setCurrentText("demo")
    pixels, _ = scene(3, SIZE)  # the tiny model's random weights give it 4 segments
    viewer.add_image(pixels, name="scene", rgb=True)
    segment.run_button.click()
    qtbot.waitUntil(lambda: not segment.busy, timeout=30_000)
    layer = viewer.layers["scene panoptic"]
    state = session.state(layer)
    first = int(state.table["id"].iloc[0])
    layer.brush_size = 7
    layer.paint((8, 8), first)  # a correction: the segments it touches become "edited"
    table = state.table
    segments, edited = len(table), int((table["source"] == "edited").sum())
    assert segments > 1 and edited >= 1

    assert (widget.labels_combo.currentText(), widget.image_combo.currentText()) == ("scene panoptic", "scene")
    assert widget.name_edit.text() == "scene"
    folder = tmp_path / "dataset"
    widget.folder.setText(str(folder))
    assert export_and_wait(widget, qtbot) == [f"Exported 1 image(s) to {folder}"]

    summary = widget.dataset.summary()
    assert (summary["images"], summary["segments"], summary["edited"], summary["problems"]) == (
        1, segments, edited, 0
    )
    assert summary["instances"] == int(table["isthing"].sum())  # COCO instances: one per thing segment
    assert widget.summary.text() == describe(widget.dataset)
    assert widget.summary.text() == (
        f"dataset: 1 images, {segments} segments ({edited / segments:.0%} edited, in 1 images), "
        f"{summary['instances']} instances, {len(Vocabulary.preset('coco'))} categories\nno problems"
    )
    np.testing.assert_array_equal(read_png(folder / "images" / "scene.png"), pixels)
    assert [widget.review_combo.itemText(i) for i in range(widget.review_combo.count())] == ["scene"]

    widget.open_button.click()  # Open dataset: the image and labels as the reader makes them
    image_again, labels_again = viewer.layers[-2], viewer.layers[-1]
    assert (image_again.name, labels_again.name) == ("scene [1]", "scene panoptic [1]")
    np.testing.assert_array_equal(labels_again.data, layer.data)
    np.testing.assert_array_equal(image_again.data, pixels)
    reread = labels_again.features.set_index("index").loc[table["id"]]
    assert reread["category"].tolist() == table["category"].tolist()
    assert reread["source"].tolist() == table["source"].tolist()

    widget.labels_combo.setCurrentText("scene panoptic")  # the same name again: refused...
    messages = export_and_wait(widget, qtbot)
    assert messages == [f"Export: ['scene'] already in {folder}: tick 'Overwrite' to replace, or change the name"]
    widget.overwrite_box.setChecked(True)  # ...until Overwrite is ticked
    assert export_and_wait(widget, qtbot) == [f"Exported 1 image(s), 1 replaced to {folder}"]
    assert open_dataset(folder).summary()["images"] == 1


def test_unassigned_segments_and_a_wrong_image_are_refused_with_what_to_do(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    pixels, result = scene(1, SIZE)
    viewer.add_image(pixels, name="photo", rgb=True)
    viewer.add_image(np.zeros((8, 8), np.uint8), name="thumbnail")
    # Opened like the reader opens a dataset image: metadata and features, adopted on export.
    layer = viewer.add_layer(Layer.create(*labels_layer_data(result, "photo panoptic")))
    widget = ExportWidget(viewer)
    assert (widget.labels_combo.currentText(), widget.image_combo.currentText()) == ("photo panoptic", "photo")
    assert export_and_wait(widget, qtbot) == [
        "Export: choose the dataset folder (a new folder, or a dataset to add to)"
    ]
    folder = tmp_path / "dataset"
    widget.folder.setText(str(folder))

    widget.image_combo.setCurrentText("thumbnail")
    [message] = export_and_wait(widget, qtbot)
    assert message == (
        "Export: 'thumbnail' is (8, 8) but the labels (64, 64): choose the image they segment, or (none)"
    )
    widget.image_combo.setCurrentText("photo")

    painted = int(layer.data.max()) + 1  # a segment nobody named
    layer.data[:4, :4] = painted
    layer.refresh()
    Session.of(viewer).state(layer).sync()
    [message] = export_and_wait(widget, qtbot)
    assert message.startswith(f"Export: segments without a category ('photo': segments [{painted}])")
    assert "tick 'Skip unassigned segments'" in message and not folder.exists()

    widget.skip_box.setChecked(True)
    widget.semantic_box.setChecked(False)
    assert export_and_wait(widget, qtbot) == [f"Exported 1 image(s) to {folder}"]
    dataset = open_dataset(folder)
    expected = np.where(layer.data == painted, 0, layer.data)
    np.testing.assert_array_equal(dataset.read("photo").label_map, expected)
    assert dataset.image("photo").semantic is None and dataset.vocabulary == VOCABULARY


def test_a_stack_exports_one_image_per_segmented_plane(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    (first, first_result), (last, last_result) = scene(2, SIZE), scene(3, SIZE)
    stack = np.stack([first, np.zeros_like(first), last])
    image = viewer.add_image(stack, name="cells", rgb=True)
    data, rows, claimed = initial_labels(stack.shape[:-1], {(0,): first_result, (2,): last_result})
    layer = viewer.add_labels(data, name="cells panoptic")
    session = Session.of(viewer)
    session.register(SegmentationLayer(layer, VOCABULARY, rows, claimed=claimed, image_layer=image))
    widget = ExportWidget(viewer)
    widget.folder.setText(str(tmp_path / "stack"))
    assert export_and_wait(widget, qtbot) == [f"Exported 2 image(s) to {tmp_path / 'stack'}"]

    dataset = open_dataset(tmp_path / "stack")
    assert dataset.names == ["cells-0", "cells-2"]
    for name, plane in (("cells-0", 0), ("cells-2", 2)):
        np.testing.assert_array_equal(dataset.read(name).label_map, layer.data[plane])
        np.testing.assert_array_equal(read_png(dataset.image(name).image), stack[plane])
    assert widget.summary.text().startswith(f"stack: 2 images, {len(first_result.segments) + len(last_result.segments)} segments (0% edited")
    assert widget.image_combo.itemText(0) == NO_IMAGE
