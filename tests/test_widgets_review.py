"""The review queue in a real (headless) viewer, with the Refine panel opened from the Plugins menu:
J / Shift+J select segments in the documented order and move the camera onto them, V marks one
reviewed (in the layer's features) and moves on, edits count as reviewed, "n of N reviewed"
follows; on a photo segmented by the Segment widget the model's margins order the queue."""

import numpy as np
import pytest
from conftest import fast_tiny, random_image
from test_io_samples import small_vocabulary

from napari_odise import Predictor, Vocabulary
from napari_odise._widgets.gl_compat import guard_triton
from napari_odise._widgets.review_queue import MARGIN, REVIEW_KEYS, canvas_size, layer_margins, viewer_camera
from napari_odise._widgets.session import Session
from napari_odise.io.layers import labels_layer_data
from napari_odise.models import ModelSpec
from napari_odise.result import PanopticResult, category_fields, segments_table
from napari_odise.review import review_order

VOCABULARY = small_vocabulary()  # person 1, car 3 (things), road 149 (stuff)
SCALE = 2.0
# id: (category id, score, rows, columns) on a 60 x 80 map (4800 pixels: tiny below 16)
SEGMENTS = {
    1: (1, 0.90, slice(0, 20), slice(0, 40)),
    2: (3, 0.40, slice(0, 20), slice(40, 80)),
    3: (1, 0.70, slice(20, 40), slice(0, 80)),
    4: (149, 0.95, slice(40, 60), slice(0, 70)),
    5: (3, 0.99, slice(40, 42), slice(70, 74)),  # 8 pixels: 0.99 * 8 / 16
}
ORDER = [2, 5, 3, 1, 4]


def hand_made() -> PanopticResult:
    label_map = np.zeros((60, 80), np.int32)
    rows = []
    for segment_id, (category_id, score, ys, xs) in SEGMENTS.items():
        label_map[ys, xs] = segment_id
        rows.append((segment_id, *category_fields(VOCABULARY.by_id(category_id)), score,
                     int((label_map == segment_id).sum()), "model"))
    return PanopticResult(label_map, segments_table(*zip(*rows)), VOCABULARY)


def press(viewer, key):
    """A key press as the canvas hands it to napari (active layer's keymap first)."""
    viewer.window._qt_viewer._key_map_handler.press_key(key)


@pytest.fixture
def panel(make_napari_viewer):
    viewer = make_napari_viewer()
    data, kwargs, _ = labels_layer_data(hand_made(), "hand")
    layer = viewer.add_labels(data, **kwargs, scale=(SCALE, SCALE))
    _, refine = viewer.window.add_plugin_dock_widget("napari-odise", "Refine segments")
    viewer.layers.selection.active = layer
    return viewer, refine, layer


def reviewed(layer) -> dict[int, bool]:
    features = layer.features
    return dict(zip(features["index"].tolist()[1:], features["reviewed"].tolist()[1:]))


def expected_view(viewer, ys: slice, xs: slice):
    """Camera centre (world) and zoom that show a box of data pixels with the margin around it."""
    centre = ((ys.start + ys.stop) / 2 - 0.5) * SCALE, ((xs.start + xs.stop) / 2 - 0.5) * SCALE
    half = np.maximum([(ys.stop - ys.start) / 2, (xs.stop - xs.start) / 2], 16) * (1 + 2 * MARGIN)
    zoom = float(np.min(np.asarray(canvas_size(viewer)) / (2 * half * SCALE)))
    return centre, zoom


def test_keys_walk_the_queue_move_the_camera_and_mark_reviewed(panel):
    viewer, refine, layer = panel
    queue = refine.review
    assert queue.counter.text() == "0 of 5 reviewed"
    seen = []
    for _ in range(len(ORDER)):
        press(viewer, "j")
        seen.append(int(layer.selected_label))
        _, _, ys, xs = SEGMENTS[seen[-1]]
        centre, zoom = expected_view(viewer, ys, xs)
        assert viewer_camera(viewer).center[-2:] == pytest.approx(centre)
        assert viewer_camera(viewer).zoom == pytest.approx(zoom)
    assert seen == ORDER
    press(viewer, "j")  # wraps around to the head
    assert layer.selected_label == ORDER[0]
    press(viewer, "Shift-J")  # and back
    assert layer.selected_label == ORDER[-1]

    press(viewer, "j")
    assert layer.selected_label == 2
    press(viewer, "v")  # 2 reviewed; on to the next one
    assert reviewed(layer) == {1: False, 2: True, 3: False, 4: False, 5: False}
    assert layer.selected_label == 5 and queue.counter.text() == "1 of 5 reviewed"
    press(viewer, "j")
    assert layer.selected_label == 3  # reviewed segments are skipped
    press(viewer, "Shift-J")
    assert layer.selected_label == 5
    press(viewer, "Shift-J")
    assert layer.selected_label == 4  # past the reviewed 2, wrapping

    # An edit reviews a segment by itself: reassign 3 (it gets a fresh id) -> 2 of 5.
    layer.selected_label = 3
    refine.select_category("car")
    press(viewer, "r")
    assert queue.counter.text() == "2 of 5 reviewed"
    assert reviewed(layer)[int(layer.selected_label)] is True
    press(viewer, "Shift-V")  # an edited segment stays reviewed
    assert queue.counter.text() == "2 of 5 reviewed" and "stay reviewed" in queue.note.text()
    layer.selected_label = 2
    press(viewer, "Shift-V")
    assert queue.counter.text() == "1 of 5 reviewed" and reviewed(layer)[2] is False

    press(viewer, "j")  # 2 is current, but the queue did not go there: the head, 2 itself
    marked = []
    for _ in range(4):
        marked.append(int(layer.selected_label))
        press(viewer, "v")
    assert marked == [2, 5, 1, 4] and queue.counter.text() == "5 of 5 reviewed"
    press(viewer, "j")
    assert queue.note.text() == "All 5 segments of this plane are reviewed"
    # The File > Save / export path reads the flags from the layer.
    (result,) = refine.state.results().values()
    assert result.segments["reviewed"].all()


def test_the_review_keys_do_not_clash_and_are_bound_on_the_layer(panel):
    from napari.utils.key_bindings import coerce_keybinding

    from napari_odise._widgets.proposal_picker import PROPOSAL_KEYS
    from napari_odise._widgets.shortcuts import SHORTCUTS

    _, refine, layer = panel
    for key in REVIEW_KEYS:
        assert key not in SHORTCUTS and key not in PROPOSAL_KEYS
        assert coerce_keybinding(key) in layer.keymap
        assert REVIEW_KEYS[key][1] in refine.review.toolTip()


def test_a_stack_counts_the_plane_in_view_and_the_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    first, second = hand_made(), hand_made()
    data, kwargs, _ = labels_layer_data({(0,): first, (1,): second}, "stack")
    layer = viewer.add_labels(data, **kwargs)
    _, refine = viewer.window.add_plugin_dock_widget("napari-odise", "Refine segments")
    viewer.layers.selection.active = layer
    viewer.dims.set_current_step(0, 1)
    press(viewer, "j")
    assert layer.selected_label == ORDER[0] + 5  # plane 1's ids follow plane 0's
    press(viewer, "v")
    assert refine.review.counter.text() == "1 of 5 reviewed in this plane; 1 of 10 in the layer"
    viewer.dims.set_current_step(0, 0)
    assert refine.review.counter.text() == "0 of 5 reviewed in this plane; 1 of 10 in the layer"


@pytest.fixture(scope="module")
def predictor():
    guard_triton()
    return Predictor(fast_tiny(), device="cpu")


def test_the_model_margins_order_a_segmented_photo(make_napari_viewer, predictor, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(random_image(96, 128, seed=0), name="photo", rgb=True)
    _, segment = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
    session = Session.of(viewer)
    session.pool.put(ModelSpec("tiny", "cpu"), predictor)
    Vocabulary.parse("person\ncar\ndog\ntree (stuff)\nroad (stuff)\nsky (stuff)").save(
        tmp_path / "street.txt"
    )
    session.vocabulary.load(tmp_path / "street.txt")
    segment.model_combo.setCurrentText("tiny")
    segment.device_combo.setCurrentText("cpu")
    segment.settings_combo.setCurrentText("demo")
    segment.run_button.click()
    qtbot.waitUntil(lambda: not segment.busy, timeout=180_000)
    layer = viewer.layers["photo panoptic"]
    _, refine = viewer.window.add_plugin_dock_widget("napari-odise", "Refine segments")
    viewer.layers.selection.active = layer
    state = refine.state
    made = state.model_results[()]
    assert len(state.table) >= 2 and made.margins
    margins = layer_margins(state, (), state.table)
    assert margins == made.margins  # a fresh 2-D layer keeps the result's ids
    order = review_order(state.table, layer.data.size, made.margins)
    press(viewer, "j")
    assert int(layer.selected_label) == order[0]
    press(viewer, "j")
    assert int(layer.selected_label) == order[1]
    assert refine.review.counter.text() == f"0 of {len(order)} reviewed"


def test_layer_margins_follow_the_pixels_and_skip_another_answers_segments():
    from types import SimpleNamespace

    made = hand_made()
    made.margins = {1: 0.5, 2: 0.25, 3: 0.125}
    plane = np.where(made.label_map > 0, made.label_map + 10, 0).astype(np.int32)  # layer ids 11..15
    table = made.segments.assign(id=made.segments["id"] + 10)
    state = SimpleNamespace(model_results={(): made}, plane=lambda key: plane)
    assert layer_margins(state, (), table) == {11: 0.5, 12: 0.25, 13: 0.125}
    table.loc[table["id"] == 12, "category_id"] = 1  # not what that result said: not its margin
    table.loc[table["id"] == 13, "source"] = "edited"
    assert layer_margins(state, (), table) == {11: 0.5}
