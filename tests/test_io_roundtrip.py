"""Export -> import -> export gives the same bytes; what import restores; appending rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_io_samples import (
    LITERAL_MAP,
    dataset_files,
    literal_result,
    load_json,
    make_result,
    random_image,
    random_result,
    save_jpeg,
    small_vocabulary,
)

from napari_odise.io import (
    DatasetError,
    export_result,
    export_results,
    open_dataset,
    read_instances,
    read_panoptic,
)
from napari_odise.result import ImageSource
from napari_odise.vocabulary import Category, Vocabulary

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
TIMESTAMPS = ("created", "updated")


def _two_image_dataset(root, tmp_path):
    first, second = literal_result(info={"model": "odise_label_coco_50e"}), random_result(seed=5)
    jpeg = save_jpeg(tmp_path / "photo.jpg", LITERAL_MAP.shape)
    export_result(first, root, image=jpeg)
    export_result(second, root, image=random_image(second.label_map.shape), image_name="random")
    return first, second


def _without_times(manifest: dict) -> dict:
    manifest = {k: v for k, v in manifest.items() if k not in TIMESTAMPS}
    manifest["images"] = [{k: v for k, v in r.items() if k != "exported"}
                          for r in manifest["images"]]
    return manifest


def test_export_import_export_is_byte_identical(tmp_path):
    first, second = _two_image_dataset(tmp_path / "a", tmp_path)
    results = read_panoptic(tmp_path / "a" / "annotations" / "panoptic.json")
    export_results(results, tmp_path / "b")
    before, after = dataset_files(tmp_path / "a"), dataset_files(tmp_path / "b")
    assert sorted(before) == sorted(after) == [
        "annotations/instances.json", "annotations/panoptic.json",
        "annotations/semantic_legend.json", "images/photo.jpg", "images/random.png",
        "manifest.json", "panoptic/photo.png", "panoptic/random.png", "semantic/photo.png",
        "semantic/random.png", "vocabulary.json",
    ]
    for name in before:
        if name != "manifest.json":
            assert before[name] == after[name], name
    # The manifest differs only in time stamps: provenance travels with the dataset.
    manifest_a = load_json(tmp_path / "a" / "manifest.json")
    manifest_b = load_json(tmp_path / "b" / "manifest.json")
    assert _without_times(manifest_a) == _without_times(manifest_b)
    assert manifest_b["images"][0]["source_image"] == str((tmp_path / "photo.jpg").resolve())
    assert manifest_b["images"][0]["model"] == "odise_label_coco_50e"


def test_import_restores_the_results(tmp_path):
    first, second = _two_image_dataset(tmp_path / "a", tmp_path)
    photo, random = read_panoptic(tmp_path / "a" / "annotations" / "panoptic.json")
    for original, back in ((first, photo), (second, random)):
        np.testing.assert_array_equal(back.label_map, original.label_map)
        pd.testing.assert_frame_equal(back.segments, original.segments)
    # The dataset's vocabulary: the first export's, grown by the categories of the second.
    assert photo.vocabulary == random.vocabulary
    assert photo.vocabulary.categories[:3] == first.vocabulary.categories
    assert set(photo.vocabulary.ids) == set(second.vocabulary.ids)
    assert photo.vocabulary.name == "street"
    assert photo.source == ImageSource("photo", str((tmp_path / "a" / "images" / "photo.jpg").resolve()))
    assert photo.info["image_id"] == 1 and photo.info["file_name"] == "photo.jpg"
    assert photo.model == "odise_label_coco_50e"
    assert not {"image_name", "image_path", "model"} & set(photo.info)  # typed fields, not info keys
    (only,) = read_panoptic(tmp_path / "a" / "annotations" / "panoptic.json", image_name="random")
    np.testing.assert_array_equal(only.label_map, second.label_map)
    with pytest.raises(DatasetError, match="no image named 'nope'.*photo, random"):
        read_panoptic(tmp_path / "a" / "annotations" / "panoptic.json", image_name="nope")


def test_read_instances_gives_the_thing_segments(tmp_path):
    first, _ = _two_image_dataset(tmp_path / "a", tmp_path)
    photo, _ = read_instances(tmp_path / "a" / "annotations" / "instances.json")
    things = first.segments[first.segments["isthing"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(photo.segments, things)
    np.testing.assert_array_equal(
        photo.label_map, np.where(np.isin(LITERAL_MAP, things["id"]), LITERAL_MAP, 0)
    )
    assert photo.info["overlap_pixels"] == 0 and photo.info["hidden_annotations"] == []
    assert photo.info["annotation_ids"] == {1: 1, 2: 2, 4: 3}
    assert photo.source == ImageSource("photo", str((tmp_path / "a" / "images" / "photo.jpg").resolve()))


def test_read_instances_resolves_overlaps_smaller_on_top(tmp_path):
    """Overlapping masks: smaller ones on top (ties: the later one); what is lost is reported."""
    from pycocotools import mask as mask_utils

    from napari_odise.io.stable_json import write_json

    big = np.zeros((6, 6), np.uint8)
    big[0:5, 0:5] = 1
    small = np.zeros((6, 6), np.uint8)
    small[1:3, 1:3] = 1

    def rle(mask):
        encoded = mask_utils.encode(np.asfortranarray(mask))
        return {"size": encoded["size"], "counts": encoded["counts"].decode()}

    data = {
        "images": [{"id": 4, "file_name": "x.png", "height": 6, "width": 6}],
        "categories": [{"id": 1, "name": "cell"}],
        "annotations": [  # the first is hidden: as small as the second, which comes later
            {"id": 10, "image_id": 4, "category_id": 1, "segmentation": rle(small),
             "iscrowd": 1},
            {"id": 11, "image_id": 4, "category_id": 1, "segmentation": rle(small)},
            {"id": 12, "image_id": 4, "category_id": 1, "segmentation": rle(big)},
        ],
    }
    write_json(tmp_path / "instances.json", data)
    (result,) = read_instances(tmp_path / "instances.json")
    expected = np.where(big, 3, 0)
    expected[small.astype(bool)] = 2
    np.testing.assert_array_equal(result.label_map, expected)
    assert result.segments["id"].tolist() == [2, 3]
    assert result.segments["area"].tolist() == [4, 21]
    assert result.info["hidden_annotations"] == [10]
    assert result.info["overlap_pixels"] == 4
    assert "iscrowd" not in result.info
    assert result.vocabulary.by_id(1).isthing


def test_append_continues_ids_and_grows_the_vocabulary(tmp_path):
    root = tmp_path / "ds"
    export_result(literal_result(), root, image_name="one")
    more = small_vocabulary().categories + (Category(40, "bicycle", isthing=True),)
    vocabulary = Vocabulary(more, name="other")
    second = make_result(LITERAL_MAP, {1: (40, 0.6, "model"), 2: (1, 0.5, "model"),
                                       4: (3, 0.4, "model"), 7: (149, 0.3, "model")}, vocabulary)
    records = export_results([second, literal_result()], root, image_names=["two", "three"])
    assert [r.image_id for r in records] == [2, 3]
    assert records[0].instance_ids == (4, 5, 6) and records[1].instance_ids == (7, 8, 9)
    dataset = open_dataset(root)
    assert dataset.names == ["one", "two", "three"]
    assert dataset.vocabulary.ids == (1, 3, 149, 40) and dataset.vocabulary.name == "street"
    assert dataset.problems == ()
    instances = load_json(root / "annotations" / "instances.json")
    assert [a["id"] for a in instances["annotations"]] == list(range(1, 10))
    legend = load_json(root / "annotations" / "semantic_legend.json")
    assert [c["id"] for c in legend["classes"]] == [1, 3, 149, 40]


def test_existing_names_need_overwrite_which_keeps_ids(tmp_path):
    root = tmp_path / "ds"
    export_results([literal_result(), random_result(seed=2)], root, image_names=["a", "b"])
    before = load_json(root / "annotations" / "instances.json")["annotations"]
    ids_of_a = [x["id"] for x in before if x["image_id"] == 1]
    with pytest.raises(DatasetError, match=r"images \['a'\] are already in .*overwrite=True"):
        export_result(literal_result(), root, image_name="a")
    with pytest.raises(DatasetError, match="'A' differs only in case from 'a'"):
        export_result(literal_result(), root, image_name="A", overwrite=True)
    fewer = make_result(LITERAL_MAP * (LITERAL_MAP != 2), {1: (1, 0.9, "edited"),
                                                          4: (3, 0.2, "model"),
                                                          7: (149, 0.7, "model")},
                        small_vocabulary())
    record = export_result(fewer, root, image_name="a", overwrite=True)
    assert record.replaced and record.image_id == 1
    assert list(record.instance_ids) == ids_of_a[:2]
    dataset = open_dataset(root)
    assert dataset.names == ["a", "b"] and dataset.problems == ()
    back = dataset.read("a")
    np.testing.assert_array_equal(back.label_map, fewer.label_map)
    assert back.segments["source"].tolist() == ["edited", "model", "model"]
    assert dataset.image("a").edited == 1


def test_incompatible_vocabulary_is_refused_before_writing(tmp_path):
    root = tmp_path / "ds"
    export_result(literal_result(), root, image_name="a")
    before = dataset_files(root)
    clash = Vocabulary([Category(3, "truck"), Category(1, "person", ("person", "people"))])
    result = make_result(LITERAL_MAP, {1: (1, 0.9, "model"), 2: (3, 0.5, "model"),
                                       4: (3, 0.5, "model"), 7: (1, 0.5, "model")}, clash)
    with pytest.raises(DatasetError, match="id 3 is 'car' \\(thing\\) in the dataset but "
                                           "'truck' \\(thing\\) here"):
        export_result(result, root, image_name="b")
    assert dataset_files(root) == before


def test_a_coco_layout_dataset_is_found_and_converted(tmp_path):
    """COCO's own layout: annotations/panoptic_val.json, PNGs in annotations/panoptic_val/,
    images in val/; a crowd segment and supercategories survive the conversion."""
    from napari_odise.io.panoptic_png import write_panoptic_png
    from napari_odise.io.stable_json import write_json

    (tmp_path / "val").mkdir()
    save_jpeg(tmp_path / "val" / "000139.jpg", LITERAL_MAP.shape)
    write_panoptic_png(tmp_path / "annotations" / "panoptic_val" / "000139.png", LITERAL_MAP)
    data = {
        "images": [{"id": 139, "file_name": "000139.jpg", "height": 6, "width": 8}],
        "annotations": [{"image_id": 139, "file_name": "000139.png", "segments_info": [
            {"id": 1, "category_id": 1, "area": 6, "bbox": [0, 0, 2, 3], "iscrowd": 1},
            {"id": 2, "category_id": 1, "area": 5, "bbox": [3, 1, 5, 5], "iscrowd": 0},
            {"id": 4, "category_id": 3, "area": 9, "bbox": [4, 0, 4, 3], "iscrowd": 0},
            {"id": 7, "category_id": 149, "area": 19, "bbox": [0, 3, 8, 3], "iscrowd": 0},
        ]}],
        "categories": [
            {"id": 1, "name": "person", "supercategory": "human", "isthing": 1},
            {"id": 3, "name": "car", "supercategory": "vehicle", "isthing": 1},
            {"id": 149, "name": "road", "supercategory": "ground", "isthing": 0},
        ],
    }
    write_json(tmp_path / "annotations" / "panoptic_val.json", data)
    (result,) = read_panoptic(tmp_path / "annotations" / "panoptic_val.json")
    assert result.source == ImageSource("000139", str((tmp_path / "val" / "000139.jpg").resolve()))
    assert result.info["iscrowd"] == [1]
    assert result.segments["source"].tolist() == ["model"] * 4
    assert result.segments["score"].isna().all()
    export_result(result, tmp_path / "ds")
    converted = load_json(tmp_path / "ds" / "annotations" / "panoptic.json")
    assert [s["iscrowd"] for s in converted["annotations"][0]["segments_info"]] == [1, 0, 0, 0]
    assert [c["supercategory"] for c in converted["categories"]] == ["human", "vehicle", "ground"]
    instances = load_json(tmp_path / "ds" / "annotations" / "instances.json")["annotations"]
    assert [(a["segment_id"], a["iscrowd"]) for a in instances] == [(1, 1), (2, 0), (4, 0)]
    assert (tmp_path / "ds" / "images" / "000139.jpg").read_bytes() == (
        tmp_path / "val" / "000139.jpg").read_bytes()


def test_malformed_panoptic_files_are_reported(tmp_path):
    from napari_odise.io.panoptic_png import write_panoptic_png
    from napari_odise.io.stable_json import write_json

    write_panoptic_png(tmp_path / "x.png", LITERAL_MAP)
    data = {"images": [{"id": 1, "file_name": "x.jpg", "height": 6, "width": 8}],
            "annotations": [{"image_id": 1, "file_name": "x.png", "segments_info": [
                {"id": 1, "category_id": 1}, {"id": 7, "category_id": 99}]}],
            "categories": [{"id": 1, "name": "person", "isthing": 1}]}
    write_json(tmp_path / "p.json", data)
    with pytest.raises(DatasetError, match=r"segment ids \[2, 4\] are in the PNG but not in"):
        read_panoptic(tmp_path / "p.json")
    data["annotations"][0]["segments_info"] += [{"id": 2, "category_id": 1},
                                                {"id": 4, "category_id": 1}]
    write_json(tmp_path / "p.json", data)
    with pytest.raises(DatasetError, match="segment 7 has category_id 99, which is not in"):
        read_panoptic(tmp_path / "p.json")
    with pytest.raises(DatasetError, match="not a COCO panoptic file"):
        read_panoptic(tmp_path / "x.png.json" if False else _write(tmp_path / "n.json", "{}"))


def _write(path, text):
    path.write_text(text)
    return path
