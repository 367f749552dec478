"""The refinement panel in a real (headless) viewer: buttons and keyboard shortcuts drive the
actions on a hand-made layer with exact results, the picker builds a selection, undo restores,
and re-scoring asks the tiny model about an edited mask."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import fast_tiny
from napari.utils.key_bindings import coerce_keybinding

from napari_odise.models import ModelSpec
from napari_odise import PanopticResult, Predictor
from napari_odise._widgets.gl_compat import guard_triton
from napari_odise._widgets.layer_state import SegmentationLayer, initial_labels
from napari_odise._widgets.refine_widget import RefineWidget
from napari_odise._widgets.session import ModelChoice, Session
from napari_odise._widgets.shortcuts import SHORTCUTS, help_text

from hand_made import CAT, DOG, GRASS
from hand_made import MAP as SMALL
from hand_made import VOCABULARY as VOCAB
SCALE = 4  # each cell is 4x4 pixels: an image big enough for the model to re-score


def big(small):
    return np.kron(np.asarray(small, dtype=np.int32), np.ones((SCALE, SCALE), np.int32))


@pytest.fixture(scope="module")
def predictor():
    guard_triton()
    return Predictor(fast_tiny(), device="cpu")


def refine_panel(viewer, predictor, direct: bool):
    """A hand-made layer and the panel on it: opened from the Plugins menu, or built directly."""
    pixels = np.random.default_rng(1).integers(0, 255, (*big(SMALL).shape, 3), dtype=np.uint8)
    image = viewer.add_image(pixels, name="photo", rgb=True)
    segments = [(1, CAT, 0.9), (2, CAT, 0.8), (3, DOG, 0.5), (4, GRASS, 0.7), (5, DOG, 0.6)]
    info = [{"id": i, "category_id": c.id, "isthing": c.isthing, "score": s} for i, c, s in segments]
    result = PanopticResult.from_segments_info(big(SMALL), info, VOCAB)
    data, rows, claimed = initial_labels(result.label_map.shape, {(): result})
    layer = viewer.add_labels(data, name="photo panoptic")
    session = Session.of(viewer)
    session.register(SegmentationLayer(layer, VOCAB, rows, claimed=claimed, image_layer=image))
    session.pool.put(ModelSpec("tiny", "cpu"), predictor)
    session.choice = ModelChoice("tiny", "cpu")
    if direct:
        widget = RefineWidget(viewer)
        viewer.window.add_dock_widget(widget)
    else:
        _, widget = viewer.window.add_plugin_dock_widget("napari-odise", "Refine segments")
    viewer.layers.selection.active = layer
    return viewer, widget, layer


@pytest.fixture
def panel(make_napari_viewer, predictor):
    return refine_panel(make_napari_viewer(), predictor, direct=False)


@pytest.fixture
def direct_panel(make_napari_viewer, predictor):
    return refine_panel(make_napari_viewer(), predictor, direct=True)


def press(layer, key):
    layer.keymap[coerce_keybinding(key)](layer)


def rows(widget):
    table = widget.state.table
    return list(zip(table["id"], table["category"], table["area"] // SCALE**2, table["source"]))


def test_shortcuts_are_bound_on_the_layer_and_listed_in_the_help(panel):
    viewer, widget, layer = panel
    assert widget.layer is layer
    for key, (_, description) in SHORTCUTS.items():
        assert coerce_keybinding(key) in layer.keymap
        assert description in help_text() and description in widget.toolTip()
    viewer.layers.selection.active = viewer.layers["photo"]  # an image: the panel keeps its layer
    assert widget.layer is layer
    viewer.layers.remove(layer)
    assert widget.layer is None and coerce_keybinding("G") not in layer.keymap


def shift_click(widget, layer, row, column):
    """What napari hands a layer's mouse callback for a Shift+click at a data position."""
    event = SimpleNamespace(
        position=(row, column), modifiers=["Shift"], view_direction=None, dims_displayed=[0, 1]
    )
    widget._on_click(layer, event)


def test_pick_select_merge_reassign_with_keys_and_undo(panel):
    _, widget, layer = panel
    widget.pick_mode()
    assert layer.mode == "pick"
    layer.selected_label = 2  # a click on segment 2 makes it current
    shift_click(widget, layer, 4 * SCALE, 0)  # Shift+click on 4 adds both (then cleared again)
    assert widget.selection == [2, 4]
    press(layer, "Shift-A")
    assert widget.selection == []
    layer.selected_label = 2
    press(layer, "A")
    layer.selected_label = 5
    press(layer, "A")
    assert widget.selection == [2, 5] and widget.selection_list.count() == 2
    assert widget.selection_list.item(1).text() == "#5 dog (thing), score 0.60, 64 px, model"
    press(layer, "G")  # merge: category of the largest (2: cat), fresh id
    assert layer.selected_label == 6 and widget.selection == [6]  # still selected after the edit
    np.testing.assert_array_equal(layer.data, big(np.where(np.isin(SMALL, [2, 5]), 6, SMALL)))
    assert "#6 cat (thing)" in widget.current.text()
    widget.category_filter.setText("gra")  # search; the first match is chosen
    assert widget.chosen_category() == GRASS
    press(layer, "R")
    np.testing.assert_array_equal(layer.data, big(np.where(np.isin(SMALL, [2, 5]), 7, SMALL)))
    assert rows(widget) == [
        (1, "cat", 9, "model"),
        (3, "dog", 3, "model"),
        (4, "grass", 6, "model"),
        (7, "grass", 12, "edited"),
    ]
    assert layer.selected_label == 7
    layer.undo()
    layer.undo()
    np.testing.assert_array_equal(layer.data, big(SMALL))
    assert rows(widget)[1] == (2, "cat", 8, "model")


def test_split_delete_fill_remove_small_and_new_segment_buttons(direct_panel):
    _, widget, layer = direct_panel
    layer.selected_label = 1
    press(layer, "S")
    expected = SMALL.copy()
    expected[4:, 6:] = 6
    np.testing.assert_array_equal(layer.data, big(expected))
    layer.selected_label = 2
    press(layer, "H")  # the hole at (1, 4) is 4x4 pixels now
    expected[1, 4] = 2
    np.testing.assert_array_equal(layer.data, big(expected))
    layer.selected_label = 3
    press(layer, "D")
    expected[expected == 3] = 0
    np.testing.assert_array_equal(layer.data, big(expected))
    widget.min_size.setValue(5 * SCALE**2)  # segment 5 (4 cells) and the split-off part go
    press(layer, "K")
    expected[np.isin(expected, [5, 6])] = 0
    np.testing.assert_array_equal(layer.data, big(expected))
    widget.select_category("dog")
    press(layer, "N")
    assert (layer.selected_label, layer.mode) == (7, "paint")
    assert "#7 dog (new: paint it with the brush)" in widget.current.text()
    layer.brush_size = 1
    with layer.block_history():  # one stroke, as the mouse makes it
        for x in range(4):
            layer.paint((13, x), 7)
    assert rows(widget)[-1][:2] == (7, "dog") and widget.state.table["area"].iloc[-1] == 4
    assert widget.state.result().segments["id"].tolist() == [1, 2, 4, 7]


def test_rescore_asks_the_model_about_the_edited_mask(panel, predictor, qtbot):
    viewer, widget, layer = panel
    image = viewer.layers["photo"].data
    layer.selected_label = 4
    press(layer, "C")
    qtbot.waitUntil(lambda: widget._rescore_worker is None, timeout=30_000)
    scores = widget.last_scores
    assert set(scores) == set(VOCAB.ids) and math.isclose(sum(scores.values()), 1.0, rel_tol=1e-5)
    expected = predictor.rescore(image, big(SMALL) == 4, VOCAB)
    assert scores == pytest.approx(expected)
    (new_id,) = set(np.unique(layer.data[big(SMALL) == 4]))
    row = widget.state.table.set_index("id").loc[new_id]
    assert new_id == layer.selected_label == 6
    assert (row["category"], row["score"], row["source"]) == (
        "grass",
        pytest.approx(scores[GRASS.id]),
        "edited",
    )
    assert "model:" in widget.scores.text()


def test_the_selection_is_outlined_on_the_canvas_and_follows_edits(panel):
    viewer, widget, layer = panel
    widget.add_to_selection(1)
    widget.add_to_selection(3)
    outline = viewer.layers["photo panoptic selection"]
    data = np.asarray(layer.data)
    np.testing.assert_array_equal(np.asarray(outline.data), np.where(np.isin(data, [1, 3]), data, 0))
    assert outline.contour == 2 and outline.metadata == {"odise_derived": "selection"}  # never a target
    assert viewer.layers.index(outline) == viewer.layers.index(layer) + 1  # just above the segments
    assert viewer.layers.selection.active is layer  # the segments stay the layer being edited
    widget.merge()
    (merged,) = widget.selection
    np.testing.assert_array_equal(np.asarray(outline.data) > 0, np.asarray(layer.data) == merged)
    widget.clear_selection()
    assert "photo panoptic selection" not in viewer.layers
