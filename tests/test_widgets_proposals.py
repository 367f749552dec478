"""Proposals at a click in a real (headless) viewer: Segment and Refine opened from the Plugins
menu, a click in pick mode lists the model's proposals, Down/Up move the outline, Enter replaces
the segment, napari's undo restores pixels and table; Q at the cursor after a vocabulary change
lists the new vocabulary's categories; Escape closes, and without a list keeps napari's meaning.
What a click reads is built in a worker thread; a click during the build lists once it is done."""

import threading
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import fast_tiny, random_image
from napari.utils.interactions import mouse_press_callbacks
from napari.utils.key_bindings import coerce_keybinding

from napari_odise import Predictor, Vocabulary, proposals
from napari_odise._widgets.gl_compat import guard_triton
from napari_odise._widgets.proposal_picker import PROPOSAL_KEYS, outline
from napari_odise._widgets.session import Session
from napari_odise.models import ModelSpec

STREET = Vocabulary.parse("person\ncar\nbicycle\ndog\ntree (stuff)\nroad (stuff)\nsky (stuff)\nbuilding (stuff)")


@pytest.fixture(scope="module")
def predictor():
    guard_triton()
    return Predictor(fast_tiny(), device="cpu")


@pytest.fixture
def panels(make_napari_viewer, predictor, qtbot, tmp_path):
    """A photo segmented with the tiny model from the Segment widget, and the Refine panel on it,
    both opened the way users open them; the proposals built (in the background)."""
    opened = open_panels(make_napari_viewer, predictor, qtbot, tmp_path)
    qtbot.waitUntil(lambda: not opened[2].proposals.preparing, timeout=60_000)
    return opened


def open_panels(make_napari_viewer, predictor, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(random_image(96, 128, seed=0), name="photo", rgb=True)
    _, segment = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
    session = Session.of(viewer)
    session.pool.put(ModelSpec("tiny", "cpu"), predictor)
    STREET.save(tmp_path / "street.txt")
    session.vocabulary.load(tmp_path / "street.txt")
    segment.model_combo.setCurrentText("tiny")
    segment.device_combo.setCurrentText("cpu")
    segment.settings_combo.setCurrentText("demo")
    segment.run_button.click()
    qtbot.waitUntil(lambda: not segment.busy, timeout=180_000)
    layer = viewer.layers["photo panoptic"]
    _, refine = viewer.window.add_plugin_dock_widget("napari-odise", "Refine segments")
    viewer.layers.selection.active = layer
    return viewer, segment, refine, layer


def click(layer, y, x):
    """A plain left click at data (y, x), through every mouse callback of the layer (napari's
    picker and the Refine panel's)."""
    event = SimpleNamespace(
        type="mouse_press", is_dragging=False, position=(y, x), view_direction=None,
        dims_displayed=[0, 1], dims_point=(y, x), modifiers=[], button=1, handled=False,
    )
    mouse_press_callbacks(layer, event)


def press(viewer, key):
    """A key press as the canvas hands it to napari: through the keymaps of the active layer,
    its class and the viewer."""
    viewer.window._qt_viewer._key_map_handler.press_key(key)


def preview(viewer, layer):
    shown = viewer.layers[f"{layer.name} proposal"]
    assert shown.visible
    return shown.data.astype(bool)


def test_click_browse_replace_and_undo(panels, predictor):
    viewer, _, refine, layer = panels
    picker, state = refine.proposals, refine.state
    result = state.model_results[()]
    for key in PROPOSAL_KEYS:
        assert coerce_keybinding(key) in layer.keymap
    before_map, before_table = np.array(layer.data), state.table.copy()
    y, x = 48, 64
    refine.pick_mode()
    click(layer, y, x)
    expected = proposals.proposals_at(predictor, result, y, x, STREET)
    assert len(expected) >= 2 and picker.list.count() == len(expected)
    first = expected[0]
    assert picker.list.item(0).text() == (
        f"1. {first.category.name} ({'thing' if first.category.isthing else 'stuff'})  "
        f"score {first.score:.2f}  {first.area:,} px"
    )
    assert layer.selected_label == before_map[y, x]  # napari's picker still picks
    np.testing.assert_array_equal(preview(viewer, layer), outline(proposals.proposal_mask(predictor, result, first), 2))
    assert viewer.layers.selection.active is layer  # keys still go to the segments

    press(viewer, "Down")
    press(viewer, "Down")
    press(viewer, "Up")
    assert picker.shown == 1 and picker.list.currentRow() == 1
    chosen = expected[1]
    mask = proposals.proposal_mask(predictor, result, chosen)
    np.testing.assert_array_equal(preview(viewer, layer), outline(mask, 2))

    press(viewer, "Enter")
    new_id = int(layer.data[y, x])
    under = before_map[y, x]
    outside = ~(mask | (before_map == under))
    np.testing.assert_array_equal(layer.data[outside], before_map[outside])
    assert (layer.data[mask] == new_id).all() and (layer.data[(before_map == under) & ~mask] == 0).all()
    row = state.table[state.table["id"] == new_id].iloc[0]
    assert (row["category"], row["score"], row["area"], row["source"]) == (
        chosen.category.name, chosen.score, mask.sum(), "edited"
    )
    assert layer.features.set_index("index").loc[new_id, "category"] == chosen.category.name
    assert layer.selected_label == new_id and f"#{new_id} {chosen.category.name}" in refine.current.text()
    assert picker.list.count() == 0 and not viewer.layers[f"{layer.name} proposal"].visible

    press(viewer, "Control-Z")
    np.testing.assert_array_equal(layer.data, before_map)
    assert state.table.equals(before_table)
    assert layer.features["index"].tolist()[1:] == before_table["id"].tolist()


def test_q_at_the_cursor_follows_the_vocabulary_and_escape_closes(panels, predictor, qtbot):
    viewer, segment, refine, layer = panels
    picker, state = refine.proposals, refine.state
    press(viewer, "Escape")  # nothing listed: napari's own Escape (reset the polygon) runs, no error
    assert picker.list.count() == 0

    y, x = 30, 77
    viewer.cursor.position = (y, x)
    press(viewer, "Q")  # listed under the first vocabulary
    assert picker.list.count() > 0 and {p.category.name for p in picker.proposals} <= set(STREET.names)

    animals = Vocabulary.parse("cat\nhorse\nsheep\ngrass (stuff)")
    session = Session.of(viewer)
    session.vocabulary.remove(*STREET.names[1:])  # a vocabulary change re-labels the layer
    session.vocabulary.add_text(animals.to_text())
    qtbot.waitUntil(lambda: not segment.busy, timeout=180_000)
    qtbot.waitUntil(lambda: not picker.preparing, timeout=60_000)  # the new vocabulary's classes
    vocabulary = state.vocabulary
    assert set(vocabulary.names) == {"person", *animals.names}

    before = np.array(layer.data)
    press(viewer, "Enter")  # the list predates the change: listed again instead of replacing
    np.testing.assert_array_equal(layer.data, before)
    expected = proposals.proposals_at(predictor, state.model_results[()], y, x, vocabulary)
    assert picker.list.count() == len(expected) > 0 and "listed again" in picker.status.text()
    names = [picker.list.item(k).text().split(". ", 1)[1].split(" (")[0] for k in range(picker.list.count())]
    assert names == [p.category.name for p in expected] and set(names) <= set(vocabulary.names)

    press(viewer, "Escape")
    assert picker.list.count() == 0 and not viewer.layers[f"{layer.name} proposal"].visible
    press(viewer, "Enter")  # nothing listed: nothing replaced
    np.testing.assert_array_equal(layer.data, before)
    press(viewer, "Q")  # and at the cursor again: the new vocabulary's categories
    assert [p.query for p in picker.proposals] == [p.query for p in expected]


def test_proposals_are_built_off_the_gui_thread_and_a_click_meanwhile_lists_when_ready(
    make_napari_viewer, predictor, qtbot, tmp_path, monkeypatch
):
    builders, gate = [], threading.Event()
    build = proposals.QueryMaskIndex.from_probabilities

    def held_build(shape, probabilities):  # a slow build: held until the test lets it go
        builders.append(threading.current_thread())
        assert gate.wait(60)
        return build(shape, probabilities)

    monkeypatch.setattr(proposals.QueryMaskIndex, "from_probabilities", staticmethod(held_build))
    viewer, _, refine, layer = open_panels(make_napari_viewer, predictor, qtbot, tmp_path)
    picker, result = refine.proposals, refine.state.model_results[()]
    qtbot.waitUntil(lambda: len(builders) == 1, timeout=10_000)  # started when the panel found the results
    assert picker.preparing and not proposals.prepared(predictor, result, STREET)

    y, x = 48, 64
    refine.pick_mode()
    click(layer, y, x)  # returns at once, the build still held
    assert not gate.is_set() and picker.list.count() == 0
    assert picker.status.text().startswith("preparing proposals")
    gate.set()
    qtbot.waitUntil(lambda: picker.list.count() > 0, timeout=60_000)
    expected = proposals.proposals_at(predictor, result, y, x, STREET)
    assert [p.query for p in picker.proposals] == [p.query for p in expected] and picker.at == ((), y, x)
    assert picker.list.count() == len(expected) and preview(viewer, layer).any()
    assert len(builders) == 1 and builders[0] is not threading.main_thread()


def test_the_outline_is_the_masks_edge_band():
    mask = np.zeros((10, 10), bool)
    mask[2:8, 1:9] = True
    band = outline(mask, 2)
    expected = mask.copy()
    expected[4:6, 3:7] = False  # two steps in from every edge
    np.testing.assert_array_equal(band, expected)
    assert not outline(np.zeros((4, 4), bool), 2).any()
