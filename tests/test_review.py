"""The review queue's order, the reviewed flag through edits, layers and the exported dataset."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
from conftest import fast_tiny, random_image
from test_io_samples import small_vocabulary

from napari_odise import refine
from napari_odise.io import DatasetError, export_result, export_results, read_panoptic
from napari_odise.io.layers import labels_layer_data, results_from_labels
from napari_odise.predictor import Predictor
from napari_odise.result import PanopticResult, category_fields, segments_table
from napari_odise.review import (
    category_margins,
    confidence,
    mark_reviewed,
    progress,
    result_order,
    review_queue,
    step,
    tiny_area,
)
from napari_odise.vocabulary import Vocabulary

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
VOCABULARY = small_vocabulary()  # person 1, car 3 (things), road 149 (stuff)
SIDE = 200  # 40000 pixels: tiny_area = 40

# id: (category id, score, margin or None, area, source)
SEGMENTS = {
    1: (1, 0.90, 0.80, 1600, "model"),  # sure: confidence 0.8
    2: (3, 0.60, None, 1600, "model"),  # no margin: the score, 0.6
    3: (1, 0.95, 0.10, 1600, "model"),  # high score but a close runner-up: 0.1
    4: (1, 0.99, 0.90, 10, "model"),  # tiny: 0.9 * 10 / 40 = 0.225
    5: (-1, np.nan, None, 1600, "model"),  # unassigned: 0
    6: (149, np.nan, None, 1600, "model"),  # no evidence either way: 1.0
    7: (3, 0.50, 0.10, 1600, "model"),  # ties with 3: id order
    8: (3, 0.30, None, 1600, "edited"),  # 0.3, but edited: reviewed
}
EXPECTED_ORDER = [5, 3, 7, 4, 8, 2, 1, 6]


def hand_made(segments=SEGMENTS, reviewed=()) -> PanopticResult:
    """Each segment a run of whole rows and columns of a 200x200 map, with the given areas."""
    label_map = np.zeros(SIDE * SIDE, dtype=np.int32)
    start = 0
    for segment_id, (*_, area, _source) in segments.items():
        label_map[start : start + area] = segment_id
        start += area
    label_map = label_map.reshape(SIDE, SIDE)
    rows = []
    for segment_id, (category_id, score, _, area, source) in segments.items():
        category = None if category_id == -1 else VOCABULARY.by_id(category_id)
        rows.append((segment_id, *category_fields(category), score, area, source,
                     segment_id in reviewed))
    margins = {i: s[2] for i, s in segments.items() if s[2] is not None}
    result = PanopticResult(label_map, segments_table(*zip(*rows)), VOCABULARY, margins=margins)
    result.validate()
    return result


def test_the_order_follows_the_documented_rule():
    result = hand_made()
    assert tiny_area(result.label_map.size) == 40
    sure = dict(zip(result.segments["id"], confidence(result.segments, result.label_map.size,
                                                      result.margins)))
    assert sure == pytest.approx({1: 0.8, 2: 0.6, 3: 0.1, 4: 0.225, 5: 0.0, 6: 1.0, 7: 0.1, 8: 0.3})
    assert result_order(result) == EXPECTED_ORDER
    assert review_queue(result) == [5, 3, 7, 4, 2, 1, 6]  # 8 is edited
    assert progress(result.segments) == (1, 8)
    # Without margins the scores decide: 3 (0.95) moves behind 1 (0.9).
    assert result_order(PanopticResult(result.label_map, result.segments, VOCABULARY)) == [
        5, 4, 8, 7, 2, 1, 3, 6
    ]


def test_next_and_previous_skip_reviewed_segments_and_wrap_around():
    result = mark_reviewed(hand_made(), [3, 2])
    assert review_queue(result) == [5, 7, 4, 1, 6]
    order, done = result_order(result), {3, 2, 8}
    assert step(order, done, 5) == 7
    assert step(order, done, 3) == 7  # from a reviewed segment: the next unreviewed after it
    assert step(order, done, 6) == 5  # wraps
    assert step(order, done, 5, forward=False) == 6
    assert step(order, done, 4, forward=False) == 7
    assert step(order, done, 99) == 5 and step(order, done, 0, forward=False) == 6
    assert step(order, set(order), 5) is None


def test_marking_reviewed_is_a_copy_and_edited_segments_stay_reviewed():
    result = hand_made()
    marked = mark_reviewed(result, [1, 8])
    assert result.segments["reviewed"].tolist() == [False] * 7 + [True]
    assert marked.segments["reviewed"].tolist() == [True] + [False] * 6 + [True]
    unmarked = mark_reviewed(marked, [1, 8], reviewed=False)
    assert unmarked.segments["reviewed"].tolist() == [False] * 7 + [True]  # 8 is edited
    with pytest.raises(ValueError, match="no segments with ids \\[42\\]"):
        mark_reviewed(result, [42])


def test_edited_segments_count_as_reviewed():
    result = hand_made()
    label_map, segments = refine.reassign(result.label_map, result.segments, [3], VOCABULARY.by_id(3))
    edited = result.with_edit(label_map, segments)
    assert 3 not in review_queue(edited) and progress(edited.segments) == (2, 8)
    assert edited.margins == {1: 0.8, 4: 0.9, 7: 0.1}  # the edited segment's margin is gone
    label_map, segments = refine.merge(edited.label_map, edited.segments, [1, 2])
    merged = edited.with_edit(label_map, segments)
    assert review_queue(merged) == [5, 7, 4, 6]
    # Painting (napari's brush, read back by refine.sync) and a split: the parts are edited too.
    painted = merged.label_map.copy().ravel()
    start = int(np.flatnonzero(painted == 7)[0])
    painted[start + 400 : start + 600] = 0  # a band one row wide cuts segment 7 in two
    label_map, segments = refine.sync(painted.reshape(SIDE, SIDE), merged.segments, VOCABULARY)
    label_map, segments = refine.split_connected(label_map, segments, 7)
    cut = merged.with_edit(label_map, segments)
    assert len(cut.segments) == len(merged.segments) + 1
    assert review_queue(cut) == [5, 4, 6] and progress(cut.segments) == (5, 8)


def test_the_model_stores_each_segments_margin():
    vocabulary = Vocabulary.preset("coco")
    predictor = Predictor(fast_tiny(), device="cpu")
    result = predictor.predict(skimage.data.coffee(), vocabulary)
    assert len(result.segments) > 0
    assert set(result.margins) == set(result.segments["id"].tolist())
    logprobs = predictor.model.classify(result.encoded, predictor.embed(vocabulary), result.settings)
    probabilities = logprobs.double().softmax(-1)[:, :-1]
    for row in result.segments.itertuples(index=False):
        queries = result.query_ids[row.id]
        best = max(queries, key=lambda q: float(probabilities[q].max()))
        first, second = torch.sort(probabilities[best], descending=True).values[:2].tolist()
        assert result.margins[row.id] == pytest.approx(first - second, abs=1e-12)
        assert 0.0 <= result.margins[row.id] <= row.score + 1e-6
    # One category: the runner-up has probability 0; no queries: no margin.
    one, none = category_margins(torch.log(torch.tensor([[0.7, 0.3]])), [[0], []])
    assert one == pytest.approx(0.7) and np.isnan(none)


def test_the_export_keeps_the_flag_and_reads_it_back(tmp_path):
    result = mark_reviewed(hand_made(), [1, 6])
    root = tmp_path / "dataset"
    export_result(result, root, image=random_image(SIDE, SIDE), image_name="photo",
                  skip_unassigned=True)
    data = json.loads((root / "annotations" / "panoptic.json").read_text())
    flags = {s["id"]: s.get("reviewed") for s in data["annotations"][0]["segments_info"]}
    assert flags == {1: True, 2: None, 3: None, 4: None, 6: True, 7: None, 8: True}
    (back,) = read_panoptic(root / "annotations" / "panoptic.json")
    expected = result.segments[result.segments["id"] != 5].reset_index(drop=True)
    pd.testing.assert_frame_equal(back.segments, expected)
    # A file from before the flag (or another tool): nothing reviewed but the edited segments.
    for segment in data["annotations"][0]["segments_info"]:
        segment.pop("reviewed", None)
    (root / "annotations" / "panoptic.json").write_text(json.dumps(data))
    (old,) = read_panoptic(root / "annotations" / "panoptic.json")
    assert old.segments["reviewed"].tolist() == [False, False, False, False, False, False, True]


def test_a_flag_that_is_not_true_or_false_is_refused(tmp_path):
    root = tmp_path / "dataset"
    export_result(hand_made(), root, image=random_image(SIDE, SIDE), image_name="photo",
                  skip_unassigned=True)
    path = root / "annotations" / "panoptic.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["segments_info"][0]["reviewed"] = "yes"
    path.write_text(json.dumps(data))
    with pytest.raises(Exception, match="reviewed 'yes', not true/false"):
        read_panoptic(path)


def test_layers_keep_the_flag_per_plane_and_old_tables_read_as_not_reviewed():
    first = mark_reviewed(hand_made(), [1, 4])
    second = mark_reviewed(hand_made(), [6])
    data, kwargs, _ = labels_layer_data({(0,): first, (1,): second}, "stack")
    features = kwargs["features"]
    assert features["reviewed"].dtype == bool
    assert features["reviewed"].sum() == 3 + 2  # plus each plane's edited segment 8
    back = results_from_labels(data, features, kwargs["metadata"])
    assert back[(0,)].segments["reviewed"].tolist() == first.segments["reviewed"].tolist()
    assert back[(1,)].segments["reviewed"].tolist() == second.segments["reviewed"].tolist()
    old_table = features.drop(columns="reviewed")
    back = results_from_labels(data, old_table, kwargs["metadata"])
    assert back[(0,)].segments["reviewed"].tolist() == [False] * 7 + [True]


def test_a_changed_flag_is_not_taken_for_an_unchanged_image(tmp_path):
    """A re-run that skips images the dataset holds as given (the CLI's chunked export) must not
    skip one whose flags changed: it is an image already in, to be replaced with --overwrite."""
    result, image, root = hand_made(), random_image(SIDE, SIDE), tmp_path / "dataset"
    options = dict(images=[image], image_names=["photo"], skip_unassigned=True)
    export_result(result, root, image=image, image_name="photo", skip_unassigned=True)
    assert export_results([result], root, skip_unchanged=True, **options) == []
    marked = mark_reviewed(result, [2])
    with pytest.raises(DatasetError, match="already in"):
        export_results([marked], root, skip_unchanged=True, **options)
    assert len(export_results([marked], root, overwrite=True, **options)) == 1
    (back,) = read_panoptic(root / "annotations" / "panoptic.json")
    assert back.segments.set_index("id").loc[2, "reviewed"]
