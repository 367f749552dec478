"""The widgets' headless layer: refinement actions on hand-made maps, undo/redo, brush sync,
the keep-edits rule for new model results, the vocabulary editor's model and the job runner.
No Qt: layers live in ``napari.components.ViewerModel``."""

import math
import threading

import numpy as np
import pandas as pd
import pytest
from napari.components import ViewerModel

from napari_odise import PanopticResult, Vocabulary
from napari_odise._widgets import actions
from napari_odise._widgets.job import Job, JobError, Progress
from napari_odise._widgets.layer_state import SegmentationLayer, initial_labels
from napari_odise._widgets.overlays import NamesOverlay, SemanticOverlay, label_points
from napari_odise._widgets.planes import current_plane
from napari_odise._widgets.relabel import place_result
from napari_odise._widgets.vocabulary_model import VocabularyModel
from napari_odise.result import UNASSIGNED, segments_table

from hand_made import CAT, DOG, GRASS, MAP
from hand_made import VOCABULARY as VOCAB
SEGMENTS = [(1, CAT, 0.9), (2, CAT, 0.8), (3, DOG, 0.5), (4, GRASS, 0.7), (5, DOG, 0.6)]
ORIGINAL_ROWS = [
    (1, "cat", 0.9, 9, "model"),
    (2, "cat", 0.8, 8, "model"),
    (3, "dog", 0.5, 3, "model"),
    (4, "grass", 0.7, 6, "model"),
    (5, "dog", 0.6, 4, "model"),
]


def model_result(label_map=MAP, segments=SEGMENTS, vocabulary=VOCAB):
    info = [{"id": i, "category_id": c.id, "isthing": c.isthing, "score": s} for i, c, s in segments]
    return PanopticResult.from_segments_info(label_map, info, vocabulary)


def make_state(label_map=MAP, segments=SEGMENTS):
    result = model_result(label_map, segments)
    data, rows, claimed = initial_labels(label_map.shape, {(): result})
    layer = ViewerModel().add_labels(data, name="test panoptic")
    return SegmentationLayer(layer, VOCAB, rows, claimed=claimed, model_results={(): result})


def table(rows):
    """(id, category name or "unassigned", score, area, source) rows -> a segments table."""

    def field(name, attribute, default):
        return default if name == "unassigned" else getattr(VOCAB.by_name(name), attribute)

    return segments_table(
        [r[0] for r in rows],
        [field(r[1], "id", UNASSIGNED) for r in rows],
        [r[1] for r in rows],
        [field(r[1], "isthing", False) for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
    )


def check(state, expected_map, expected_rows):
    """Exact map and table; the layer's features mirror the table; the plane validates."""
    np.testing.assert_array_equal(state.layer.data, np.asarray(expected_map, dtype=np.int32))
    pd.testing.assert_frame_equal(state.table, table(expected_rows))
    assert_layer_consistent(state)


def assert_layer_consistent(state):
    if state.layer.data.ndim == 2:
        state.result(()).validate()
    data = np.asarray(state.layer.data)
    ids, counts = np.unique(data, return_counts=True)
    features = state.layer.features
    assert features["index"].tolist() == [0, *ids[ids > 0].tolist()]
    assert features["area"].tolist() == ([] if ids[0] == 0 else [0]) + counts.tolist()
    assert features.loc[features["index"] > 0, "category"].tolist() == state.table["category"].tolist()
    assert set(ids[ids > 0].tolist()) <= set(state.layer.colormap.color_dict)


def test_new_layer_has_the_result_ids_features_colours_and_metadata():
    state = make_state()
    result = model_result()
    check(state, MAP, ORIGINAL_ROWS)
    pd.testing.assert_frame_equal(state.layer.features, result.features())
    for segment_id, rgba in result.colors().items():
        np.testing.assert_allclose(state.layer.colormap.color_dict[segment_id], rgba)
    assert Vocabulary.from_json(state.layer.metadata["odise"]["vocabulary"]) == VOCAB
    # the io package reads the layer back as the same result
    from napari_odise.io.layers import result_from_labels

    again = result_from_labels(state.layer.data, state.layer.features, state.layer.metadata)
    pd.testing.assert_frame_equal(again.segments, result.segments)


def test_reassign_gives_a_fresh_id_and_undo_redo_restore_categories():
    state = make_state()
    assert actions.reassign(state, (), [1], DOG) == [6]
    after = np.where(MAP == 1, 6, MAP)
    after_rows = [*ORIGINAL_ROWS[1:], (6, "dog", 0.9, 9, "edited")]
    check(state, after, after_rows)
    state.layer.undo()
    check(state, MAP, ORIGINAL_ROWS)
    state.layer.redo()
    check(state, after, after_rows)
    assert actions.reassign(state, (), [6], DOG) == [6]  # same category: nothing changes
    check(state, after, after_rows)


def test_merge_takes_the_largest_members_category_and_the_area_weighted_score():
    state = make_state()
    assert actions.merge(state, (), [5, 2]) == 6
    expected = np.where(np.isin(MAP, [2, 5]), 6, MAP)
    check(
        state,
        expected,
        [
            (1, "cat", 0.9, 9, "model"),
            (3, "dog", 0.5, 3, "model"),
            (4, "grass", 0.7, 6, "model"),
            (6, "cat", (0.8 * 8 + 0.6 * 4) / 12, 12, "edited"),
        ],
    )
    state.layer.undo()
    check(state, MAP, ORIGINAL_ROWS)


def test_split_keeps_the_largest_part_and_gives_the_others_fresh_ids():
    state = make_state()
    assert actions.split(state, (), 1) == [1, 6]
    expected = MAP.copy()
    expected[4:, 6:] = 6
    check(
        state,
        expected,
        [
            (1, "cat", 0.9, 5, "edited"),
            *ORIGINAL_ROWS[1:],
            (6, "cat", 0.9, 4, "edited"),
        ],
    )


def test_delete_fill_holes_and_remove_small():
    state = make_state()
    actions.delete(state, (), [3])
    check(state, np.where(MAP == 3, 0, MAP), [r for r in ORIGINAL_ROWS if r[0] != 3])
    state.layer.undo()
    check(state, MAP, ORIGINAL_ROWS)

    actions.fill_holes(state, (), 2)
    filled = MAP.copy()
    filled[1, 4] = 2
    check(state, filled, [r if r[0] != 2 else (2, "cat", 0.8, 9, "edited") for r in ORIGINAL_ROWS])

    actions.remove_small(state, (), 4)  # segment 3's parts have 1 and 2 pixels
    check(
        state,
        np.where(filled == 3, 0, filled),
        [
            (1, "cat", 0.9, 9, "model"),
            (2, "cat", 0.8, 9, "edited"),
            (4, "grass", 0.7, 6, "model"),
            (5, "dog", 0.6, 4, "model"),
        ],
    )


def test_new_segment_is_painted_with_napaaris_brush_and_gets_its_category():
    state = make_state()
    layer = state.layer
    segment_id = actions.new_segment(state, GRASS)
    assert (segment_id, layer.selected_label, layer.mode) == (6, 6, "paint")
    assert 6 not in state.table["id"].tolist()
    np.testing.assert_allclose(layer.colormap.color_dict[6][:3], np.array(GRASS.color) / 255)
    layer.brush_size = 1
    layer.paint((3, 1), 6)  # a script's paint: napari emits "paint" before writing the pixels
    expected = MAP.copy()
    expected[3, 1] = 6
    check(state, expected, [*ORIGINAL_ROWS, (6, "grass", math.nan, 1, "edited")])
    layer.fill((3, 3), 4)  # the bucket fills the unlabeled region it touches (not (3, 0), (1, 4))
    filled = np.where(expected == 0, 4, expected)
    filled[3, 0] = filled[1, 4] = 0
    check(
        state,
        filled,
        [
            *ORIGINAL_ROWS[:3],
            (4, "grass", 0.7, int((filled == 4).sum()), "edited"),
            ORIGINAL_ROWS[4],
            (6, "grass", math.nan, 1, "edited"),
        ],
    )
    layer.undo()
    layer.undo()
    check(state, MAP, ORIGINAL_ROWS)


def test_napaaris_new_label_skips_ids_of_deleted_segments():
    state = make_state()
    actions.delete(state, (), [5])
    state.layer.selected_label = 5  # what napari's "M" (max + 1) gives after deleting the top id
    assert state.layer.selected_label == 6
    state.layer.brush_size = 1
    state.layer.paint((3, 1), 6)
    assert state.table.set_index("id").loc[6, "category"] == "unassigned"


def test_random_edits_strokes_and_undos_keep_table_and_map_in_step():
    rng = np.random.default_rng(7)
    label_map = rng.integers(0, 6, size=(4, 5)).repeat(4, axis=0).repeat(4, axis=1).astype(np.int32)
    present = sorted(set(np.unique(label_map).tolist()) - {0})
    segments = [(i, VOCAB[i % 3], round(float(rng.random()), 3)) for i in present]
    state = make_state(label_map, segments)
    layer = state.layer
    for step in range(60):
        ids = state.table["id"].tolist()
        kind = rng.integers(0, 11)
        if kind == 0 and ids:
            actions.reassign(state, (), [int(rng.choice(ids))], VOCAB[int(rng.integers(0, 3))])
        elif kind == 1 and len(ids) >= 2:
            actions.merge(state, (), rng.choice(ids, size=2, replace=False).tolist())
        elif kind == 2 and ids:
            actions.split(state, (), int(rng.choice(ids)))
        elif kind == 3 and ids:
            actions.delete(state, (), [int(rng.choice(ids))])
        elif kind == 4 and ids:
            actions.fill_holes(state, (), int(rng.choice(ids)))
        elif kind == 5:
            actions.remove_small(state, (), int(rng.integers(2, 20)))
        elif kind == 6:
            layer.brush_size = int(rng.integers(1, 5))
            with layer.block_history():  # as napari's mouse stroke does
                for _ in range(3):
                    layer.paint(tuple(rng.integers(0, 16, size=2)), int(rng.integers(0, 12)))
        elif kind == 7:
            layer.fill(tuple(rng.integers(0, 16, size=2)), int(rng.integers(1, 12)))
        elif kind == 8:
            layer.undo()
        elif kind == 9:
            layer.redo()
        else:  # a script's paint outside a stroke: napari emits "paint" before the write
            layer.paint(tuple(rng.integers(0, 16, size=2)), int(rng.integers(0, 12)))
        assert_layer_consistent(state)


def test_edits_on_one_plane_of_a_stack_keep_ids_unique_across_planes():
    results = {(0,): model_result(), (1,): model_result()}
    data, rows, claimed = initial_labels((2, *MAP.shape), results)
    np.testing.assert_array_equal(data[0], MAP)
    np.testing.assert_array_equal(data[1], np.where(MAP > 0, MAP + 5, 0))
    layer = ViewerModel().add_labels(data, name="stack panoptic")
    state = SegmentationLayer(layer, VOCAB, rows, claimed=claimed, model_results=results)
    assert state.table["id"].tolist() == list(range(1, 11))
    assert actions.split(state, (1,), 6) == [6, 11]
    np.testing.assert_array_equal(layer.data[0], MAP)
    assert state.plane_table((1,))["id"].tolist() == [6, 7, 8, 9, 10, 11]
    assert_layer_consistent(state)


def test_adopting_a_plain_labels_layer_makes_unassigned_segments_to_refine():
    layer = ViewerModel().add_labels(MAP.astype(np.uint8), name="drawn by hand")
    state = SegmentationLayer.adopt(layer, VOCAB)
    assert layer.data.dtype == np.int32
    check(
        state,
        MAP,
        [(i, "unassigned", math.nan, a, "edited") for i, a in [(1, 9), (2, 8), (3, 3), (4, 6), (5, 4)]],
    )
    assert actions.reassign(state, (), [4], GRASS) == [6]
    again = SegmentationLayer.adopt(layer, Vocabulary.parse("other"))  # features + metadata carry over
    assert again.vocabulary == VOCAB
    pd.testing.assert_frame_equal(again.table, state.table)


# --- the keep-edits rule for new model results --------------------------------------------------
def test_place_result_keeps_edited_segments_and_cleared_pixels_and_reuses_unchanged_ids():
    old = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0], [3, 3, 0, 0]], np.int32)
    claimed = np.ones((4, 4), bool)
    claimed[3, 3] = False  # the model never labeled this pixel; the other zeros were deleted
    new = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]], np.int32)
    new_segments = table(
        [(1, "cat", 0.5, 8, "model"), (2, "grass", 0.4, 4, "model"), (3, "dog", 0.3, 4, "model")]
    )
    placement = place_result(
        old, claimed, [2], {1: CAT.id, 3: GRASS.id}, new, new_segments, iter([10, 11]).__next__
    )
    np.testing.assert_array_equal(
        placement.label_map, [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0], [3, 3, 0, 10]]
    )
    assert placement.ids == {1: (1, True), 2: (3, True), 3: (10, False)}
    assert placement.claimed.all()


def test_place_result_gives_fresh_ids_when_a_category_changes_and_drops_hidden_segments():
    old = np.array([[1, 1, 2, 2]], np.int32)
    new = np.array([[1, 1, 2, 2]], np.int32)
    new_segments = table([(1, "dog", 0.5, 2, "model"), (2, "cat", 0.4, 2, "model")])
    placement = place_result(
        old, np.ones((1, 4), bool), [2], {1: CAT.id}, new, new_segments, iter([7]).__next__
    )
    np.testing.assert_array_equal(placement.label_map, [[7, 7, 2, 2]])
    assert placement.ids == {1: (7, False)}


def test_a_new_result_keeps_manual_edits_and_ids_and_is_one_undo_step():
    state = make_state()
    actions.reassign(state, (), [5], GRASS)  # 5 -> 6, edited
    actions.delete(state, (), [3])
    state.layer.brush_size = 1
    state.layer.paint((3, 2), 4)  # grows model segment 4: now edited
    edited_map = np.array(state.layer.data)
    relabelled = model_result(
        segments=[(1, DOG, 0.3), (2, CAT, 0.2), (3, DOG, 0.1), (4, CAT, 0.4), (5, DOG, 0.5)]
    )
    state.apply_results({(): relabelled}, VOCAB)
    expected = edited_map.copy()
    expected[MAP == 1] = 7  # model segment 1 changed category: fresh id
    np.testing.assert_array_equal(state.layer.data, expected)  # 2 reused, 3 stays deleted, 4 and 6 kept
    check(
        state,
        expected,
        [
            (2, "cat", 0.2, 8, "model"),
            (4, "grass", 0.7, 7, "edited"),
            (6, "grass", 0.6, 4, "edited"),
            (7, "dog", 0.3, 9, "model"),
        ],
    )
    state.layer.undo()
    np.testing.assert_array_equal(state.layer.data, edited_map)
    assert state.table.set_index("id").loc[1, "category"] == "cat"


# --- vocabulary editor model ----------------------------------------------------------------------
def test_vocabulary_model_presets_custom_categories_and_stable_ids():
    model = VocabularyModel(presets=("pascal-voc",))
    voc = Vocabulary.preset("pascal-voc")
    assert model.vocabulary == voc
    changes = []
    model.changed.connect(lambda: changes.append(1))
    assert model.add_text("traffic cone: cone, pylon (thing)\nperson") == ["person"]
    cone = model.vocabulary.by_name("traffic cone")
    assert (cone.id, cone.synonyms, cone.isthing) == (
        max(voc.ids) + 1,
        ("traffic cone", "cone", "pylon"),
        True,
    )
    model.set_preset("coco", True)
    assert model.vocabulary.by_name("traffic cone").id == cone.id
    assert model.vocabulary.by_name("person").id == voc.by_name("person").id
    assert len(model.vocabulary) == len(voc + Vocabulary.preset("coco")) + 1
    model.set_preset("pascal-voc", False)  # VOC's "person" stays: COCO brought it too
    assert "person" in model.vocabulary and "pottedplant" not in model.vocabulary
    assert model.vocabulary.by_name("person").id == voc.by_name("person").id
    model.rename("traffic cone", "cone")
    assert model.vocabulary.by_id(cone.id).synonyms == ("cone", "traffic cone", "pylon")
    model.set_preset("coco", False)
    assert model.vocabulary.names == ("cone",)
    model.remove("cone")
    assert model.vocabulary is None
    with pytest.raises(ValueError, match="tick a preset or add a category"):
        model.require()
    assert len(changes) == 6


def test_vocabulary_model_counts_a_merged_duplicate_as_brought_by_both_presets():
    model = VocabularyModel(presets=("coco", "ade20k"))
    assert "sky-other-merged" in model.vocabulary and "sky" not in model.vocabulary  # "sky, clouds" once
    assert model.add_text("clouds: sky (stuff)\nrain (stuff)") == ["clouds"]
    assert "rain" in model.vocabulary and "clouds" not in model.vocabulary
    model.remove("rain")
    model.set_preset("coco", False)  # ADE20K brought it too
    assert "sky-other-merged" in model.vocabulary and "giraffe" not in model.vocabulary
    model.set_preset("ade20k", False)
    assert model.vocabulary is None


def test_vocabulary_model_save_and_load(tmp_path):
    model = VocabularyModel(presets=())
    model.add_text("cell (thing)\nbackground medium (stuff)")
    model.save(tmp_path / "v.json")
    other = VocabularyModel()
    other.load(tmp_path / "v.json")
    assert other.vocabulary == model.vocabulary and other.presets == []


# --- the job runner -------------------------------------------------------------------------------
def test_job_yields_progress_and_returns_the_result():
    def work(report):
        for i in range(3):
            report(Progress("backbone", i, 3))
        return "done"

    gen = Job().run(work)
    seen = []
    with pytest.raises(StopIteration) as stop:
        while True:
            seen.append(next(gen))
    assert [p.done for p in seen] == [0, 1, 2] and stop.value.value == "done"
    assert [round(p.fraction, 3) for p in seen] == [0.0, 0.267, 0.533]


def test_job_cancel_stops_the_work_at_its_next_report():
    job, reached = Job(), []
    release = threading.Event()

    def work(report):
        for i in range(1000):
            report(Progress("backbone", i, 1000))
            reached.append(i)
            release.wait(1)
        return "finished"

    gen = job.run(work)
    assert next(gen).done == 0
    job.cancel()
    release.set()
    with pytest.raises(StopIteration) as stop:
        while True:
            next(gen)
    assert stop.value.value is None and len(reached) <= 2
    assert not job._thread.is_alive()


def test_job_reraises_errors_from_the_work():
    def work(report):
        raise RuntimeError("weights missing: run `napari-odise weights status`")

    with pytest.raises(JobError, match="weights status") as raised:  # not a RuntimeError: see JobError
        list(Job().run(work))
    assert isinstance(raised.value.__cause__, RuntimeError) and not isinstance(raised.value, RuntimeError)


# --- derived views and planes ---------------------------------------------------------------------
def test_names_and_semantic_views_follow_the_table():
    state = make_state()
    viewer = ViewerModel()
    names, semantic = NamesOverlay(viewer, state), SemanticOverlay(viewer, state)
    assert list(names.layer.text.values) == ["cat", "cat", "dog", "grass", "dog"]
    np.testing.assert_array_equal(names.layer.data, [[0, 0], [0, 3], [0, 7], [4, 0], [4, 3]])  # ties: first
    positions = {c.id: i + 1 for i, c in enumerate(VOCAB)}  # semantic value = position + 1
    category_of = {segment_id: category.id for segment_id, category, _ in SEGMENTS}
    expected = np.vectorize(lambda i: positions[category_of[i]] if i else 0)(MAP)
    np.testing.assert_array_equal(semantic.layer.data, expected)
    assert semantic.layer.features["category"].tolist() == ["unlabeled", "cat", "dog", "grass"]
    assert semantic.layer.metadata == {"odise_derived": "semantic"} and not semantic.layer.editable
    actions.reassign(state, (), [3], GRASS)
    assert list(names.layer.text.values) == ["cat", "cat", "grass", "dog", "grass"]
    ring = np.zeros((9, 9), np.int32)
    ring[1:8, 1:8] = 1
    ring[3:6, 3:6] = 0  # the centroid lies in the hole; the name must sit on the segment
    (point,), _ = label_points(ring, table([(1, "cat", 0.5, int(ring.sum()), "model")]))
    assert ring[tuple(point.astype(int))] == 1
    assert (semantic.layer.data[MAP == 3] == positions[GRASS.id]).all()


def test_current_plane_follows_the_viewer_dims():
    viewer = ViewerModel()
    stack = viewer.add_image(np.zeros((3, 10, 12, 3), np.uint8), rgb=True)
    assert current_plane(stack, viewer.dims.point) == (1,)  # napari starts in the middle
    viewer.dims.set_current_step(0, 2)
    assert current_plane(stack, viewer.dims.point) == (2,)
    flat = viewer.add_image(np.zeros((10, 12)))
    assert current_plane(flat, viewer.dims.point) == ()
