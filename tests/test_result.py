import numpy as np
import pandas as pd
import pytest

from napari_odise import refine
from napari_odise.colors import instance_shade
from napari_odise.result import (
    SEGMENT_COLUMNS,
    UNASSIGNED,
    PanopticResult,
    check_consistency,
    segments_table,
)
from napari_odise.vocabulary import Vocabulary

VOCABULARY = Vocabulary.parse("cat\ndog\ngrass (stuff)")
MAP = np.array(
    [
        [1, 1, 1, 0, 0, 2, 2, 2],
        [1, 1, 1, 0, 0, 2, 2, 2],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [3, 3, 3, 3, 4, 4, 4, 4],
        [3, 3, 3, 3, 4, 4, 4, 4],
        [3, 3, 3, 3, 4, 4, 4, 4],
    ],
    dtype=np.int32,
)
INFO = [
    {"id": 1, "category_id": 1, "isthing": True, "score": 0.9, "query_ids": [5]},
    {"id": 2, "category_id": 1, "isthing": True, "score": 0.8, "query_ids": [7]},
    {"id": 3, "category_id": 3, "isthing": False, "score": 0.7, "query_ids": [1, 2]},
    {"id": 4, "category_id": 2, "isthing": True, "score": 0.6, "query_ids": [3]},
]
EXPECTED = segments_table(
    [1, 2, 3, 4], [1, 1, 3, 2], ["cat", "cat", "grass", "dog"], [True, True, False, True],
    [0.9, 0.8, 0.7, 0.6], [6, 6, 12, 12], ["model"] * 4,
)


def _result():
    return PanopticResult.from_segments_info(MAP, INFO, VOCABULARY, info={"model": "tiny"})


def test_from_segments_info_builds_the_table():
    result = _result()
    assert result.label_map.dtype == np.int32
    assert list(result.segments.columns) == SEGMENT_COLUMNS
    pd.testing.assert_frame_equal(result.segments, EXPECTED)
    assert result.query_ids == {1: [5], 2: [7], 3: [1, 2], 4: [3]}
    assert result.info == {"model": "tiny"}


def test_from_segments_info_scores_empty_segments_and_errors():
    by_position = PanopticResult.from_segments_info(MAP, INFO, VOCABULARY, scores=[1, 2, 3, 4])
    assert by_position.segments["score"].tolist() == [1.0, 2.0, 3.0, 4.0]
    by_id = PanopticResult.from_segments_info(MAP, INFO, VOCABULARY, scores={4: 0.25})
    assert by_id.segments["score"].tolist() == [0.9, 0.8, 0.7, 0.25]
    unscored = [{k: v for k, v in s.items() if k != "score"} for s in INFO]
    assert PanopticResult.from_segments_info(MAP, unscored, VOCABULARY).segments[
        "score"].isna().all()
    with_empty = [*INFO, {"id": 9, "category_id": 2, "isthing": True}]
    assert PanopticResult.from_segments_info(MAP, with_empty, VOCABULARY).segments[
        "id"].tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"without a table row: \[4\]"):
        PanopticResult.from_segments_info(MAP, INFO[:3], VOCABULARY)
    with pytest.raises(ValueError, match="segment 1: no category with id 77"):
        PanopticResult.from_segments_info(MAP, [{**INFO[0], "category_id": 77}, *INFO[1:]],
                                          VOCABULARY)


def _broken(change):
    label_map, segments = MAP.copy(), EXPECTED.copy()
    return change(label_map, segments)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda m, s: (m.astype(np.int64), s), "dtype must be int32"),
        (lambda m, s: (m[None], s), "must be 2-D"),
        (lambda m, s: (np.where(m == 4, -4, m).astype(np.int32), s), "negative id"),
        (lambda m, s: (m, s.drop(columns="source")), "columns must be"),
        (lambda m, s: (m, s.iloc[[0, 1, 2]]), r"without a table row: \[4\]"),
        (lambda m, s: (np.where(m == 4, 3, m).astype(np.int32),
                       s.assign(area=[6, 6, 24, 12])), r"rows without pixels .*: \[4\]"),
        (lambda m, s: (m, s.assign(area=[6, 6, 12, 11])), "wrong area for segment 4"),
        (lambda m, s: (m, pd.concat([s, s.iloc[[3]]], ignore_index=True)),
         r"duplicated segment ids in the table: \[4\]"),
        (lambda m, s: (m, s.iloc[[1, 0, 2, 3]]), "not sorted"),
        (lambda m, s: (m, s.assign(source=["model", "painted", "model", "model"])),
         "source must be one of"),
        (lambda m, s: (m, s.assign(category_id=[1, 1, 3, 9])), "category_id 9 is not in"),
        (lambda m, s: (m, s.assign(category=["cat", "cat", "grass", "cow"])),
         "segment 4: category 'cow'"),
        (lambda m, s: (m, s.assign(isthing=[True, True, True, True])), "segment 3"),
    ],
)
def test_check_consistency_names_the_broken_rule(make, message):
    label_map, segments = _broken(make)
    with pytest.raises(ValueError, match=message):
        check_consistency(label_map, segments, VOCABULARY)


def test_validate_accepts_unassigned_and_refuses_stray_query_ids():
    segments = EXPECTED.assign(
        category_id=[1, 1, 3, UNASSIGNED], category=["cat", "cat", "grass", "unassigned"],
        isthing=[True, True, False, False],
    )
    PanopticResult(MAP.copy(), segments, VOCABULARY).validate()
    with pytest.raises(ValueError, match=r"query_ids for segments not in the table: \[8\]"):
        PanopticResult(MAP.copy(), EXPECTED, VOCABULARY, query_ids={8: [1]}).validate()
    check_consistency(MAP, EXPECTED)  # without a vocabulary, categories are not checked


def test_semantic_map_and_instances():
    result = _result()
    expected = np.where(MAP == 0, -1, np.array([0, 1, 1, 3, 2])[MAP])
    np.testing.assert_array_equal(result.semantic_map(), expected)
    assert result.semantic_map().dtype == np.int32
    assert result.semantic_map(unlabeled=255)[2, 0] == 255
    instances = result.instances()
    assert [(i["id"], i["category"], i["bbox"], i["area"], i["score"]) for i in instances] == [
        (1, "cat", [0, 0, 3, 2], 6, 0.9),
        (2, "cat", [5, 0, 3, 2], 6, 0.8),
        (4, "dog", [4, 3, 4, 3], 12, 0.6),
    ]
    np.testing.assert_array_equal(instances[2]["mask"], MAP == 4)


def test_colors_shade_instances_of_a_category():
    result = _result()
    cat, dog, grass = (c.color for c in VOCABULARY)
    colors = result.colors()
    assert colors[0] == (0.0, 0.0, 0.0, 0.0)
    assert colors[None][3] == 1.0
    assert colors[1] == (*(v / 255 for v in cat), 1.0)
    assert colors[2] == (*(v / 255 for v in instance_shade(cat, 1)), 1.0)
    assert colors[2] != colors[1]
    assert colors[3] == (*(v / 255 for v in grass), 1.0)
    assert colors[4] == (*(v / 255 for v in dog), 1.0)


def test_overlay_blends_segments_and_darkens_boundaries():
    result = _result()
    image = np.full((6, 8, 3), 100, dtype=np.uint8)
    out = result.overlay(image, alpha=0.5)
    rgb = result.segment_rgb()
    blend = lambda c: tuple(int(np.floor((100 + v) / 2 + 0.5)) for v in c)  # noqa: E731
    assert tuple(out[0, 0]) == blend(rgb[1])  # interior (image border is not a boundary)
    assert tuple(out[1, 1]) == tuple(v // 2 for v in rgb[1])  # touches unlabeled
    assert tuple(out[4, 0]) == blend(rgb[3])
    assert tuple(out[4, 3]) == tuple(v // 2 for v in rgb[3])  # touches segment 4
    assert tuple(out[2, 4]) == (100, 100, 100)
    np.testing.assert_array_equal(result.overlay(image, alpha=0.0)[0, 0], [100, 100, 100])
    with pytest.raises(ValueError, match="uint8"):
        result.overlay(image.astype(float))


def test_features_table_for_napari():
    features = _result().features()
    assert list(features.columns) == [
        "index", "category", "category_id", "isthing", "score", "area", "source", "reviewed"
    ]
    assert features["reviewed"].tolist() == [False] * 5  # nobody has checked a model result
    assert features["index"].tolist() == [0, 1, 2, 3, 4]
    assert features.iloc[0][["category", "area"]].tolist() == ["unlabeled", 12]
    assert np.isnan(features.iloc[0]["score"])
    assert features["category"].tolist()[1:] == ["cat", "cat", "grass", "dog"]


def test_napari_labels_layer_shows_categories_on_hover():
    from napari.layers import Labels
    from napari.utils.colormaps import DirectLabelColormap

    result = _result()
    layer = Labels(
        result.label_map, features=result.features(),
        colormap=DirectLabelColormap(color_dict=result.colors()),
    )
    assert "category: dog" in layer.get_status((4, 5))["coordinates"]
    background = layer.get_status((2, 0))["coordinates"]
    assert "category: unlabeled" in background and "No Properties" not in background
    np.testing.assert_allclose(layer.colormap.map(np.array([2]))[0], result.colors()[2])


def test_with_vocabulary_with_edit_and_copy():
    result = _result()
    renamed = VOCABULARY.rename("cat", "kitten")
    segments = result.segments.assign(category=["kitten", "kitten", "grass", "dog"])
    relabelled = result.with_vocabulary(renamed, segments)
    assert relabelled.vocabulary is renamed and relabelled.label_map is result.label_map
    assert relabelled.query_ids == result.query_ids
    with pytest.raises(ValueError, match="segment 1: category 'cat'"):
        result.with_vocabulary(renamed, result.segments)

    edited = result.with_edit(*refine.merge(result.label_map, result.segments, [1, 2]))
    assert edited.segments["id"].tolist() == [1, 3, 4]
    assert edited.query_ids == {3: [1, 2], 4: [3]}

    marker = object()
    original = PanopticResult(MAP.copy(), EXPECTED.copy(), VOCABULARY, marker, {1: [5]},
                              {"a": [1]})
    duplicate = original.copy()
    duplicate.label_map[0, 0] = 0
    duplicate.segments.loc[0, "score"] = 0.0
    duplicate.query_ids[1].append(9)
    duplicate.info["a"].append(2)
    assert original.label_map[0, 0] == 1 and original.segments.loc[0, "score"] == 0.9
    assert original.query_ids == {1: [5]} and original.info == {"a": [1]}
    assert duplicate.encoded is marker
