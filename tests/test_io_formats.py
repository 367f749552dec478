"""Building blocks: panoptic PNG id encoding, stable JSON, atomic writes, boxes, semantic PNGs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from test_io_samples import LITERAL_MAP, decode_panoptic_png, numpy_bbox

from napari_odise.io import DatasetError, ids_to_rgb, read_panoptic_png, rgb_to_ids
from napari_odise.atomic import (
    atomic_copy,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temporaries,
)
from napari_odise.io.boxes import bounding_boxes
from napari_odise.io.categories import coco_categories, merge_vocabulary, vocabulary_from_coco
from napari_odise.io.panoptic_png import MAX_SEGMENT_ID, write_panoptic_png
from napari_odise.io.stable_json import dumps
from napari_odise.vocabulary import Category, Vocabulary


def test_panoptic_ids_encode_as_r_plus_256g_plus_65536b():
    ids = np.array([[0, 1, 255, 256], [257, 65536, 65793, MAX_SEGMENT_ID]], dtype=np.int32)
    rgb = ids_to_rgb(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 4, 3)
    assert rgb[0, 1].tolist() == [1, 0, 0]
    assert rgb[0, 2].tolist() == [255, 0, 0]
    assert rgb[0, 3].tolist() == [0, 1, 0]
    assert rgb[1, 0].tolist() == [1, 1, 0]
    assert rgb[1, 1].tolist() == [0, 0, 1]
    assert rgb[1, 2].tolist() == [1, 1, 1]
    assert rgb[1, 3].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(rgb_to_ids(rgb), ids)


def test_panoptic_png_file_round_trip_and_independent_decode(tmp_path):
    ids = np.random.default_rng(1).integers(0, MAX_SEGMENT_ID + 1, size=(17, 23)).astype(np.int32)
    path = write_panoptic_png(tmp_path / "p.png", ids)
    np.testing.assert_array_equal(read_panoptic_png(path), ids)
    np.testing.assert_array_equal(decode_panoptic_png(path), ids)
    assert Image.open(path).mode == "RGB"


def test_panoptic_png_refuses_ids_that_do_not_fit_three_bytes():
    ids = np.array([[1, MAX_SEGMENT_ID + 1]], dtype=np.int64)
    with pytest.raises(ValueError, match=r"16777216.*renumber"):
        ids_to_rgb(ids)


def test_bounding_boxes_match_numpy_also_for_large_sparse_ids():
    boxes = bounding_boxes(LITERAL_MAP, [1, 2, 4, 7, 9])
    assert boxes == {i: numpy_bbox(LITERAL_MAP == i) for i in (1, 2, 4, 7)}
    assert boxes[2] == [3, 1, 5, 5]  # two parts: the box spans both
    sparse = np.where(LITERAL_MAP > 0, LITERAL_MAP + 5_000_000, 0).astype(np.int32)
    assert bounding_boxes(sparse, [5_000_004, 5_000_007]) == {
        5_000_004: boxes[4], 5_000_007: boxes[7]
    }


def test_stable_json_is_sorted_compact_and_refuses_nan():
    assert dumps({"b": 1, "a": [0.1, "é"]}) == '{"a":[0.1,"é"],"b":1}\n'
    assert dumps({"b": 1, "a": 2}, indent=1) == '{\n "a": 2,\n "b": 1\n}\n'
    with pytest.raises(ValueError):
        dumps({"score": float("nan")})


def test_atomic_write_replaces_whole_file_and_cleans_up_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "data.json"
    atomic_write_text(target, "first")
    assert target.read_text() == "first"
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # usual permissions, not private

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_bytes(target, b"second")
    monkeypatch.undo()
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.json"]


def test_atomic_copy_and_stale_temporaries(tmp_path):
    source = tmp_path / "a.bin"
    source.write_bytes(bytes(range(256)) * 10)
    copied = atomic_copy(source, tmp_path / "out" / "b.bin")
    assert copied.read_bytes() == source.read_bytes()
    leftover = tmp_path / "out" / ".b.bin.0123abcd.tmp"
    leftover.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path / "out") == [leftover]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.bin"]


def test_coco_categories_round_trip_a_vocabulary_with_id_zero():
    vocabulary = Vocabulary.preset("ade20k")
    assert vocabulary[0].id == 0
    categories = coco_categories(vocabulary, {0: "structure"})
    assert categories[0] == {
        "id": 0, "name": "wall", "supercategory": "structure", "isthing": 0,
        "color": [120, 120, 120], "synonyms": list(vocabulary[0].synonyms),
    }
    assert categories[12]["supercategory"] == ("thing" if vocabulary[12].isthing else "stuff")
    back, supercategories = vocabulary_from_coco(categories, name=vocabulary.name)
    assert back == vocabulary and back.name == vocabulary.name
    assert supercategories[0] == "structure"


def test_merge_vocabulary_adds_new_categories_and_refuses_conflicts():
    base = Vocabulary([Category(1, "cell"), Category(2, "nucleus", isthing=False)], name="bio")
    grown = merge_vocabulary(base, Vocabulary([Category(2, "nucleus", isthing=False),
                                               Category(5, "debris")]))
    assert grown.ids == (1, 2, 5) and grown.name == "bio"
    assert grown[0] == base[0]  # existing categories keep everything, colours included
    with pytest.raises(DatasetError, match=r"id 2 is 'nucleus' \(stuff\) in the dataset but "
                                           r"'vesicle' \(thing\) here"):
        merge_vocabulary(base, Vocabulary([Category(2, "vesicle")]))
    with pytest.raises(DatasetError, match="'cell' has id 9 here but id 1 in the dataset"):
        merge_vocabulary(base, Vocabulary([Category(9, "cell")]))
