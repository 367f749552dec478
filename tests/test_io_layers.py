"""The one layer <-> result adapter (napari_odise.io.layers): its reading rules, stacks split per
plane both ways, the image source in layer metadata, and File > Save and the Export widget giving
the same per-plane results for the same layer. No Qt: layers live in ``ViewerModel``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hand_made import CAT, DOG, GRASS, MAP
from hand_made import VOCABULARY as VOCAB
from napari.components import ViewerModel
from test_io_samples import dataset_files

from napari_odise._widgets import actions
from napari_odise._widgets.export_plan import ExportOptions, export_work, plan_export
from napari_odise._widgets.layer_state import SegmentationLayer, initial_labels
from napari_odise._writer import write_dataset
from napari_odise.io import DatasetError, open_dataset
from napari_odise.io.layers import (
    labels_layer_data,
    layer_metadata,
    layer_source,
    read_metadata,
    result_from_labels,
    results_from_labels,
)
from napari_odise.result import UNASSIGNED, ImageSource, PanopticResult

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SEGMENTS = [(1, CAT, 0.9), (2, CAT, 0.8), (3, DOG, 0.5), (4, GRASS, 0.7), (5, DOG, 0.6)]
AREAS = {1: 9, 2: 8, 3: 3, 4: 6, 5: 4}


def model_result(**fields) -> PanopticResult:
    info = [{"id": i, "category_id": c.id, "isthing": c.isthing, "score": s} for i, c, s in SEGMENTS]
    return PanopticResult.from_segments_info(MAP, info, VOCAB, **fields)


def sources(result: PanopticResult) -> dict[int, str]:
    return dict(zip(result.segments["id"].tolist(), result.segments["source"].tolist()))


# --- reading rules ------------------------------------------------------------------------------
def test_the_features_table_says_category_score_and_source_and_the_pixels_the_rest():
    features = pd.DataFrame(
        {
            "index": [0, 1, 2, 3, 4],
            "category_id": [UNASSIGNED, CAT.id, CAT.id, 99, GRASS.id],  # 99: not in the vocabulary
            "score": [math.nan, 0.9, 0.8, 0.5, 0.7],
            "area": [0, AREAS[1], AREAS[2] + 1, AREAS[3], AREAS[4]],  # 2 was painted over since
            "source": ["", "model", "model", "model", "edited"],
        }
    )
    metadata = layer_metadata(VOCAB)
    result = result_from_labels(MAP, features, metadata)
    table = result.segments.set_index("id")
    assert sources(result) == {1: "model", 2: "edited", 3: "model", 4: "edited", 5: "edited"}
    assert table["category"].to_dict() == {1: "cat", 2: "cat", 3: "unassigned", 4: "grass", 5: "unassigned"}
    assert table.loc[1, "score"] == 0.9 and math.isnan(table.loc[5, "score"])  # 5: no row at all
    assert table["area"].to_dict() == AREAS


def test_a_table_without_source_column_means_edited_and_one_without_area_is_taken_at_its_word():
    by_name = pd.DataFrame({"index": [1, 2, 4], "category": ["cat", "dog", "grass"]})
    drawn = result_from_labels(MAP, by_name, layer_metadata(VOCAB))
    assert sources(drawn) == {1: "edited", 2: "edited", 3: "edited", 4: "edited", 5: "edited"}
    assert drawn.segments["category"].tolist() == ["cat", "dog", "unassigned", "grass", "unassigned"]

    claimed = by_name.assign(source="model")
    assert sources(result_from_labels(MAP, claimed, layer_metadata(VOCAB))) == {
        1: "model", 2: "model", 3: "edited", 4: "model", 5: "edited"
    }


def test_a_layer_without_vocabulary_or_with_a_stack_for_one_result_is_refused():
    with pytest.raises(DatasetError, match="no napari-odise vocabulary"):
        results_from_labels(MAP, None, {})
    assert results_from_labels(MAP, None, {}, fallback_vocabulary=VOCAB)[()].vocabulary == VOCAB
    with pytest.raises(DatasetError, match=r"3-D: read it plane by plane \(results_from_labels\)"):
        result_from_labels(np.stack([MAP, MAP]), None, layer_metadata(VOCAB))
    with pytest.raises(DatasetError, match="non-negative"):
        results_from_labels(-MAP, None, layer_metadata(VOCAB))


# --- the image source and model in metadata -------------------------------------------------------
def test_metadata_carries_the_typed_fields_under_their_documented_keys():
    metadata = layer_metadata(
        VOCAB, {"iscrowd": [2]}, source=ImageSource("photo", "/data/photo.jpg"), model="odise_label_coco_50e"
    )
    assert metadata["odise"]["info"] == {
        "iscrowd": [2], "image_name": "photo", "image_path": "/data/photo.jpg", "model": "odise_label_coco_50e"
    }
    read = read_metadata(metadata)
    assert (read.vocabulary, read.info, read.source, read.model) == (
        VOCAB, {"iscrowd": [2]}, ImageSource("photo", "/data/photo.jpg"), "odise_label_coco_50e"
    )
    (result,) = results_from_labels(MAP, None, metadata).values()
    assert (result.source, result.model, result.info) == (read.source, read.model, {"iscrowd": [2]})
    # The Segment widget's layers name their image "image"; older layers say "image_name".
    assert layer_source({"odise": {"info": {"image": "scene", "device": "cpu"}}}) == ImageSource("scene")
    assert layer_source({"odise": {"info": {"image_name": "a", "image": "b"}}}) == ImageSource("a")
    assert layer_source({"something": 1}) == ImageSource()


def test_a_result_becomes_a_layer_and_back_unchanged():
    result = model_result(source=ImageSource("photo", "/data/photo.jpg"), model="tiny")
    data, kwargs, kind = labels_layer_data(result, "photo panoptic")
    assert kind == "labels" and kwargs["name"] == "photo panoptic"
    np.testing.assert_array_equal(data, MAP)
    pd.testing.assert_frame_equal(kwargs["features"], result.features())
    assert kwargs["colormap"] == result.colors()
    again = result_from_labels(data, kwargs["features"], kwargs["metadata"])
    pd.testing.assert_frame_equal(again.segments, result.segments)
    assert (again.source, again.model, again.vocabulary) == (result.source, "tiny", VOCAB)


# --- stacks, both ways --------------------------------------------------------------------------
def test_results_by_plane_make_the_stack_the_segment_widget_makes_and_split_back_per_plane():
    results = {(0,): model_result(), (2,): model_result()}
    data, kwargs, _ = labels_layer_data(results, "cells panoptic", source=ImageSource("cells"))
    widget_data, _, _ = initial_labels((3, *MAP.shape), results)
    np.testing.assert_array_equal(data, widget_data)  # one numbering rule: ids 1.. in plane order
    assert kwargs["features"]["index"].tolist() == list(range(11))

    back = results_from_labels(data, kwargs["features"], kwargs["metadata"])
    assert list(back) == [(0,), (2,)]  # the empty plane is no annotation
    pd.testing.assert_frame_equal(back[(0,)].segments, results[(0,)].segments)
    shifted = results[(2,)].segments.assign(id=results[(2,)].segments["id"] + 5)
    pd.testing.assert_frame_equal(back[(2,)].segments, shifted)
    np.testing.assert_array_equal(back[(2,)].label_map, np.where(MAP > 0, MAP + 5, 0))
    # A plane is an image of its own: named after the stack's, with no file of its own.
    assert back[(2,)].source == ImageSource("cells-2", None)


# --- File > Save and the Export widget read a layer alike ---------------------------------------
def edited_stack(viewer):
    """A 3-plane stack (plane 1 empty) made like the Segment widget makes it, then edited: plane 2's
    segment 9 reassigned (a fresh id, 11) and a pixel of 6 painted into 7."""
    pixels = np.random.default_rng(0).integers(0, 256, (3, *MAP.shape, 3), dtype=np.uint8)
    image = viewer.add_image(pixels, name="cells", rgb=True)
    results = {(0,): model_result(), (2,): model_result()}
    data, rows, claimed = initial_labels((3, *MAP.shape), results)
    layer = viewer.add_labels(data, name="cells panoptic")
    state = SegmentationLayer(
        layer, VOCAB, rows, info={"image": "cells", "model": "tiny"}, image_layer=image,
        model_results=results, claimed=claimed,
    )
    assert actions.reassign(state, (2,), [9], DOG) == [11]
    painted = np.array(state.plane((2,)))
    painted[0, 0] = 7
    state.write([((2,), np.array(state.plane((2,))), painted)])
    return state, image


def assert_same_results(saved: dict, exported: list, names: list[str]):
    assert names == [f"cells-{key[0]}" if key else "cells" for key in saved]
    for (key, result), other in zip(saved.items(), exported):
        np.testing.assert_array_equal(result.label_map, other.label_map)
        pd.testing.assert_frame_equal(result.segments, other.segments)
        assert (result.source, result.model, result.vocabulary) == (other.source, other.model, other.vocabulary)


def test_save_and_the_export_widget_give_a_stack_the_same_per_plane_results(tmp_path):
    viewer = ViewerModel()
    state, image = edited_stack(viewer)
    layer = state.layer
    data, meta, _ = layer.as_layer_data_tuple()  # what napari hands the writer
    saved = results_from_labels(data, meta["features"], meta["metadata"])
    plan = plan_export(state, image, "cells")
    assert_same_results(saved, plan.results, plan.names)
    assert sources(saved[(0,)]) == {i: "model" for i in range(1, 6)}
    assert sources(saved[(2,)]) == {6: "edited", 7: "edited", 8: "model", 10: "model", 11: "edited"}
    assert saved[(2,)].segments.set_index("id").loc[11, "category"] == "dog"
    assert saved[(2,)].source == ImageSource("cells-2") and saved[(2,)].model == "tiny"

    # End to end: File > Save and the Export widget write the same dataset, byte for byte.
    write_dataset(str(tmp_path / "saved"), [image.as_layer_data_tuple(), layer.as_layer_data_tuple()])
    export_work(plan, tmp_path / "exported", ExportOptions())()
    files, other = dataset_files(tmp_path / "saved"), dataset_files(tmp_path / "exported")
    assert sorted(files) == sorted(other)
    assert all(files[name] == other[name] for name in files if name != "manifest.json")
    dataset = open_dataset(tmp_path / "saved")
    assert dataset.names == ["cells-0", "cells-2"]
    assert [dataset.image(n).edited for n in dataset.names] == [0, 3]
    np.testing.assert_array_equal(dataset.read("cells-2").label_map, layer.data[2])


def test_save_and_the_export_widget_give_an_adopted_2d_layer_the_same_result(tmp_path):
    viewer = ViewerModel()
    # Drawn elsewhere: categories by name, no source column, no napari-odise metadata.
    features = pd.DataFrame({"index": [1, 2, 3, 4, 5], "category": ["cat", "cat", "dog", "grass", "dog"]})
    layer = viewer.add_labels(MAP.astype(np.uint8), name="drawn", features=features)
    state = SegmentationLayer.adopt(layer, VOCAB)
    assert state.table["source"].tolist() == ["edited"] * 5
    assert state.table["category"].tolist() == ["cat", "cat", "dog", "grass", "dog"]

    data, meta, _ = layer.as_layer_data_tuple()
    saved = results_from_labels(data, meta["features"], meta["metadata"])
    plan = plan_export(state, None, "drawn")
    assert plan.names == ["drawn"] and list(saved) == [()]
    pd.testing.assert_frame_equal(saved[()].segments, plan.results[0].segments)
    assert sources(saved[()]) == {i: "edited" for i in range(1, 6)}

    write_dataset(str(tmp_path / "saved"), [layer.as_layer_data_tuple()])
    export_work(plan, tmp_path / "exported", ExportOptions())()
    files, other = dataset_files(tmp_path / "saved"), dataset_files(tmp_path / "exported")
    assert sorted(files) == sorted(other)
    assert all(files[name] == other[name] for name in files if name != "manifest.json")
    assert open_dataset(tmp_path / "saved").image("drawn").edited == 5


def test_save_refuses_a_stack_without_segments(tmp_path):
    from napari_odise._writer import SaveError

    state, _ = edited_stack(ViewerModel())
    state.layer.data = np.zeros_like(state.layer.data)
    with pytest.raises(SaveError, match="'cells panoptic' has no segments in any plane"):
        write_dataset(str(tmp_path / "ds"), [state.layer.as_layer_data_tuple()])
