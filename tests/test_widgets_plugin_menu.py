"""The widgets as users open them: through the Plugins menu (``add_plugin_dock_widget``), which
hands each widget napari's public-only proxy of the viewer, where every layer lookup returns a new
proxy object. Numbers in the test names are the items of issue 16 that failed this way."""

import numpy as np
import pytest
import skimage.data
from conftest import fast_tiny

from napari_odise import Predictor, Vocabulary
from napari_odise._widgets.gl_compat import guard_triton
from napari_odise._widgets.session import Session
from napari_odise.models import ModelSpec
from napari_odise.result import UNASSIGNED

PLUGIN = "napari-odise"


@pytest.fixture(scope="module")
def predictor():
    guard_triton()
    return Predictor(fast_tiny(), device="cpu")


def open_widget(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


@pytest.fixture
def menu(make_napari_viewer, predictor):
    """A viewer with the astronaut sample and the Segment widget opened from the Plugins menu,
    set to the tiny model on the CPU."""
    viewer = make_napari_viewer()
    segment = open_widget(viewer, "Segment")
    Session.of(viewer).pool.put(ModelSpec("tiny", "cpu"), predictor)
    segment.model_combo.setCurrentText("tiny")
    segment.device_combo.setCurrentText("cpu")
    segment.settings_combo.setCurrentText("demo")
    viewer.add_image(skimage.data.astronaut()[::2, ::2], name="astronaut", rgb=True)
    segment.image_combo.setCurrentText("astronaut")
    return viewer, segment


def run(segment, qtbot):
    segment.run_button.click()
    qtbot.waitUntil(lambda: not segment.busy, timeout=60_000)


def categories(layer) -> set[str]:
    return set(layer.features["category"][1:])


def test_the_widgets_get_the_proxy_and_share_one_session(menu):
    viewer, segment = menu
    refine = open_widget(viewer, "Refine segments")
    export = open_widget(viewer, "Export dataset")
    assert Session.of(segment.viewer) is Session.of(refine.viewer) is Session.of(viewer)
    assert Session.of(export.viewer) is Session.of(viewer)


def test_1_vocabulary_edits_relabel_the_layer(menu, qtbot):
    viewer, segment = menu
    run(segment, qtbot)
    layer = viewer.layers["astronaut panoptic"]
    assert categories(layer) <= set(Vocabulary.preset("coco").names)
    segment.vocabulary_widget.preset_boxes["ade20k"].setChecked(True)
    segment.vocabulary_widget.preset_boxes["coco"].setChecked(False)
    ade = Vocabulary.preset("ade20k")
    qtbot.waitUntil(
        lambda: not segment.busy and categories(layer) <= set(ade.names) | {"unassigned"}, timeout=30_000
    )
    assert categories(layer) <= set(ade.names)
    assert Vocabulary.from_json(layer.metadata["odise"]["vocabulary"]) == Session.of(viewer).vocabulary.vocabulary


def test_2_running_again_reuses_the_layer(menu, qtbot):
    viewer, segment = menu
    run(segment, qtbot)
    run(segment, qtbot)
    assert [layer.name for layer in viewer.layers] == ["astronaut", "astronaut panoptic"]


def test_3_names_ticked_after_a_run_are_drawn(menu, qtbot):
    viewer, segment = menu
    run(segment, qtbot)
    segment.names_box.setChecked(True)
    layer = viewer.layers["astronaut panoptic"]
    names = viewer.layers["astronaut panoptic names"]
    assert len(names.data) == len(layer.features) - 1
    assert sorted(names.text.values) == sorted(layer.features["category"][1:])


def names_at(names_layer, label_layer) -> dict[int, str]:
    """The text drawn for each segment id (each name point lies inside its segment)."""
    data = np.asarray(label_layer.data)
    points = np.round(names_layer.data).astype(int)
    return {int(data[tuple(p)]): str(t) for p, t in zip(points, names_layer.text.values)}


def semantic_names(semantic, label_layer) -> dict[int, str]:
    """The category the semantic layer shows at each segment's pixels."""
    data = np.asarray(label_layer.data)
    names = semantic.features.set_index("index")["category"]
    out = {}
    for segment_id in np.unique(data[data > 0]).tolist():
        values = np.unique(np.asarray(semantic.data)[data == segment_id])
        assert values.size == 1
        out[segment_id] = names[int(values[0])]
    return out


def table_names(layer) -> dict[int, str]:
    table = layer.features[layer.features["index"] > 0]
    return dict(zip(table["index"].tolist(), table["category"].tolist()))


def test_4_table_names_and_semantic_layer_agree_after_merge_paint_and_undo(menu, qtbot):
    viewer, segment = menu
    segment.names_box.setChecked(True)
    segment.semantic_box.setChecked(True)
    run(segment, qtbot)
    refine = open_widget(viewer, "Refine segments")
    layer = viewer.layers["astronaut panoptic"]
    viewer.layers.selection.active = layer
    names, semantic = viewer.layers["astronaut panoptic names"], viewer.layers["astronaut semantic"]
    state = Session.of(viewer).state(layer)
    assert refine.state is state

    def agree():
        expected = table_names(layer)
        assert expected == dict(zip(state.table["id"].tolist(), state.table["category"].tolist()))
        assert names_at(names, layer) == expected
        assert semantic_names(semantic, layer) == {
            i: ("unlabeled" if n == "unassigned" else n) for i, n in expected.items()
        }

    agree()
    largest, second = state.table.sort_values("area", ascending=False)["id"].tolist()[:2]
    refine.add_to_selection(largest)
    refine.add_to_selection(second)
    refine.merge()
    agree()
    merged = refine.current_id()
    area = int((np.asarray(layer.data) == merged).sum())
    # paint a new segment in a corner
    refine.select_category(state.vocabulary.names[0])
    refine.new_segment()
    new_id = refine.current_id()
    layer.brush_size = 5
    layer.paint((2, 2), new_id)
    agree()
    row = layer.features.set_index("index")
    assert row.loc[new_id, "category"] == state.vocabulary.names[0]
    assert row.loc[merged, "area"] == int((np.asarray(layer.data) == merged).sum()) <= area
    layer.undo()
    layer.undo()
    agree()
    assert len(names.data) == len(state.table)


def test_5_refine_lists_the_editors_vocabulary(menu, qtbot):
    viewer, segment = menu
    run(segment, qtbot)
    refine = open_widget(viewer, "Refine segments")
    layer = viewer.layers["astronaut panoptic"]
    viewer.layers.selection.active = layer
    segment.vocabulary_widget.new_text.setText("space suit")
    segment.vocabulary_widget.add()
    state = Session.of(viewer).state(layer)
    qtbot.waitUntil(lambda: not segment.busy and "space suit" in state.vocabulary.names, timeout=30_000)
    assert refine.category_list.count() == len(Session.of(viewer).vocabulary.vocabulary)
    refine.select_category("space suit")
    layer.selected_label = int(state.table["id"].iloc[0])
    refine.reassign()
    assert "space suit" in categories(layer)


def test_6_refine_open_before_run_keeps_a_painted_segments_category(menu, qtbot):
    viewer, segment = menu
    refine = open_widget(viewer, "Refine segments")
    run(segment, qtbot)
    layer = viewer.layers["astronaut panoptic"]
    assert refine.state is Session.of(viewer).state(layer)
    refine.select_category("person")
    refine.new_segment()
    new_id = refine.current_id()
    layer.brush_size = 5
    layer.paint((3, 3), new_id)
    row = layer.features.set_index("index").loc[new_id]
    assert row["category"] == "person" and row["category_id"] != UNASSIGNED


def test_8_segment_and_refine_fit_a_1000_px_screen_together(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1600, 1000)
    for name in ("Segment", "Refine segments", "Export dataset"):
        open_widget(viewer, name)
    window.resize(1600, 1000)
    assert window.height() <= 1000
    for dock in viewer.window.dock_widgets.values():
        assert dock.minimumSizeHint().height() < 300


def test_11_shift_click_adds_to_the_current_segment_and_the_selection_survives_reassign(menu, qtbot):
    from types import SimpleNamespace

    viewer, segment = menu
    run(segment, qtbot)
    refine = open_widget(viewer, "Refine segments")
    layer = viewer.layers["astronaut panoptic"]
    viewer.layers.selection.active = layer
    state = Session.of(viewer).state(layer)
    first, second = state.table["id"].tolist()[:2]
    layer.selected_label = first  # a click in pick mode
    layer.mode = "pick"
    y, x = np.argwhere(np.asarray(layer.data) == second)[0]
    layer.selected_label = second  # napari's picker moves the current segment first
    refine._on_click(layer, SimpleNamespace(position=(y, x), modifiers=["Shift"], view_direction=None,
                                            dims_displayed=[0, 1]))
    assert refine.selection == [first, second]
    refine.select_category(state.vocabulary.names[1])
    refine.reassign()
    assert len(refine.selection) == 2 and all(state.present(i) for i in refine.selection)
    refine.merge()  # works right after: the selection was kept
    assert state.table["category"].tolist().count(state.vocabulary.names[1]) >= 1


def test_12_names_drawn_above_the_semantic_layer_readable_with_the_labels_kept_active(menu, qtbot):
    viewer, segment = menu
    segment.names_box.setChecked(True)
    segment.semantic_box.setChecked(True)
    run(segment, qtbot)
    names = [layer.name for layer in viewer.layers]
    assert names.index("astronaut panoptic names") > names.index("astronaut semantic")
    assert viewer.layers.selection.active.name == "astronaut panoptic"
    points = viewer.layers["astronaut panoptic names"]
    assert set(points.features["text_color"]) <= {"black", "white"} and points.text.size >= 12
