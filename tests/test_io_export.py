"""Exported files checked by readers that do not share our code: a panoptic reader written from
the COCO format's definition, pycocotools for instances, the legend for semantic PNGs."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from test_io_samples import (
    LITERAL_MAP,
    decode_panoptic_png,
    literal_result,
    load_json,
    make_result,
    numpy_bbox,
    random_image,
    random_result,
    save_jpeg,
    small_vocabulary,
)

from napari_odise.io import DatasetError, export_result, export_results, open_dataset
from napari_odise.vocabulary import Vocabulary

# pycocotools' own decode trips numpy 2's copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _check_panoptic(root, results_by_name):
    """Every PNG id has one segments_info entry and vice versa; masks, areas, boxes, categories,
    scores and sources equal the label maps'."""
    data = load_json(root / "annotations" / "panoptic.json")
    images = {image["id"]: image for image in data["images"]}
    categories = {c["id"]: c for c in data["categories"]}
    assert len(data["annotations"]) == len(results_by_name)
    for annotation in data["annotations"]:
        image = images[annotation["image_id"]]
        name = image["file_name"].rsplit(".", 1)[0]
        result = results_by_name[name]
        ids = decode_panoptic_png(root / "panoptic" / annotation["file_name"])
        assert ids.shape == (image["height"], image["width"]) == result.label_map.shape
        np.testing.assert_array_equal(ids, result.label_map)
        listed = [s["id"] for s in annotation["segments_info"]]
        assert sorted(listed) == sorted(set(np.unique(ids).tolist()) - {0})
        table = result.segments.set_index("id")
        for segment in annotation["segments_info"]:
            mask = ids == segment["id"]
            row = table.loc[segment["id"]]
            assert segment["area"] == int(mask.sum()) == row["area"]
            assert segment["bbox"] == numpy_bbox(mask)
            assert segment["category_id"] == row["category_id"]
            assert categories[segment["category_id"]]["isthing"] == int(row["isthing"])
            assert segment["iscrowd"] == 0
            assert segment["source"] == row["source"]
            if np.isnan(row["score"]):
                assert "score" not in segment
            else:
                assert segment["score"] == row["score"]


def test_literal_map_exports_exactly(tmp_path):
    result = literal_result()
    image = random_image(LITERAL_MAP.shape)
    record = export_result(result, tmp_path / "ds", image=image, image_name="street")
    root = tmp_path / "ds"
    assert record.image_id == 1 and record.segments == 4 and record.edited == 2
    assert record.instance_ids == (1, 2, 3)  # persons 1, 2 and the car; road is stuff
    np.testing.assert_array_equal(np.asarray(Image.open(root / "images" / "street.png")), image)
    _check_panoptic(root, {"street": result})
    segments = load_json(root / "annotations" / "panoptic.json")["annotations"][0]["segments_info"]
    assert segments[1] == {"id": 2, "category_id": 1, "area": 5, "bbox": [3, 1, 5, 5],
                           "iscrowd": 0, "source": "edited", "score": 0.55, "reviewed": True}
    data = load_json(root / "annotations" / "panoptic.json")
    assert data["categories"][2] == {
        "id": 149, "name": "road", "supercategory": "stuff", "isthing": 0,
        "color": [128, 64, 128], "synonyms": ["road", "street"],
    }
    assert data["images"] == [{"id": 1, "file_name": "street.png", "height": 6, "width": 8}]


def test_instances_read_by_pycocotools_match_the_label_map(tmp_path):
    result = random_result(seed=3)
    export_result(result, tmp_path / "ds", image=random_image(result.label_map.shape),
                  image_name="r")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "ds" / "annotations" / "instances.json"))
    things = result.segments[result.segments["isthing"]]
    assert len(coco.anns) == len(things) > 20
    assert {c["id"] for c in coco.loadCats(coco.getCatIds())} == set(
        result.vocabulary.thing_ids
    )
    by_segment = {a["segment_id"]: a for a in coco.anns.values()}
    for row in things.itertuples():
        annotation = by_segment[row.id]
        mask = coco.annToMask(annotation).astype(bool)
        np.testing.assert_array_equal(mask, result.label_map == row.id)
        assert annotation["area"] == row.area == int(mask_utils.area(annotation["segmentation"]))
        assert annotation["bbox"] == numpy_bbox(mask)
        assert mask_utils.toBbox(annotation["segmentation"]).tolist() == annotation["bbox"]
        assert annotation["category_id"] == row.category_id
        assert annotation["source"] == row.source
    assert sorted(a["id"] for a in coco.anns.values()) == list(range(1, len(things) + 1))


def test_random_map_with_many_segments_exports_exactly(tmp_path):
    results = {f"img{k}": random_result(seed=k) for k in range(3)}
    export_results(list(results.values()), tmp_path / "ds", image_names=list(results))
    _check_panoptic(tmp_path / "ds", results)
    summary = open_dataset(tmp_path / "ds").summary()
    edited = sum(int((r.segments["source"] == "edited").sum()) for r in results.values())
    total = sum(len(r.segments) for r in results.values())
    assert summary["segments"] == total and summary["edited"] == edited
    assert summary["edited_share"] == pytest.approx(edited / total)


def test_semantic_png_holds_vocabulary_indices_with_a_legend(tmp_path):
    result = literal_result()
    export_result(result, tmp_path / "ds", image_name="street")
    legend = load_json(tmp_path / "ds" / "annotations" / "semantic_legend.json")
    assert legend["dtype"] == "uint8" and legend["unlabeled"] == 255
    assert [(c["index"], c["id"], c["name"]) for c in legend["classes"]] == [
        (0, 1, "person"), (1, 3, "car"), (2, 149, "road")
    ]
    png = Image.open(tmp_path / "ds" / "semantic" / "street.png")
    assert png.mode == "L"
    index_to_id = {c["index"]: c["id"] for c in legend["classes"]}
    pixels = np.asarray(png)
    expected = result.semantic_map(unlabeled=-1)
    decoded = np.vectorize(lambda v: index_to_id.get(int(v), -1))(pixels)
    np.testing.assert_array_equal(decoded, expected)
    assert pixels[0, 2] == 255 and pixels[0, 0] == 0 and pixels[0, 4] == 1 and pixels[3, 0] == 2


def test_semantic_png_is_16_bit_for_large_vocabularies(tmp_path):
    vocabulary = Vocabulary.preset("lvis")
    label_map = np.array([[0, 1], [2, 2]], dtype=np.int32)
    last = vocabulary[len(vocabulary) - 1].id
    result = make_result(label_map, {1: (last, 0.5, "model"), 2: (vocabulary[0].id, 0.4,
                                                                  "model")}, vocabulary)
    export_result(result, tmp_path / "ds", image_name="x", instances=False)
    pixels = np.asarray(Image.open(tmp_path / "ds" / "semantic" / "x.png"))
    assert pixels.dtype == np.uint16
    assert pixels.tolist() == [[65535, len(vocabulary) - 1], [0, 0]]
    legend = load_json(tmp_path / "ds" / "annotations" / "semantic_legend.json")
    assert legend["dtype"] == "uint16" and legend["unlabeled"] == 65535


def test_category_id_zero_is_exported_and_read_by_pycocotools(tmp_path):
    vocabulary = Vocabulary.preset("ade20k")  # wall is id 0
    thing = next(c for c in vocabulary if c.isthing)
    label_map = np.array([[1, 1, 2], [1, 0, 2]], dtype=np.int32)
    result = make_result(label_map, {1: (0, 0.8, "model"), 2: (thing.id, 0.7, "model")},
                         vocabulary)
    export_result(result, tmp_path / "ds", image_name="room")
    data = load_json(tmp_path / "ds" / "annotations" / "panoptic.json")
    assert [s["category_id"] for s in data["annotations"][0]["segments_info"]] == [0, thing.id]
    assert data["categories"][0]["id"] == 0
    np.testing.assert_array_equal(decode_panoptic_png(tmp_path / "ds" / "panoptic" / "room.png"),
                                  label_map)


def test_unassigned_segments_are_refused_with_their_ids_or_skipped(tmp_path):
    segments = {1: (1, 0.9, "model"), 2: (-1, np.nan, "edited"), 4: (3, 0.5, "model"),
                7: (-1, np.nan, "edited")}
    result = make_result(LITERAL_MAP, segments, small_vocabulary())
    with pytest.raises(DatasetError, match=r"'street': segments \[2, 7\].*skip_unassigned"):
        export_result(result, tmp_path / "ds", image_name="street")
    assert not (tmp_path / "ds" / "manifest.json").exists()
    record = export_result(result, tmp_path / "ds", image_name="street", skip_unassigned=True)
    assert record.skipped == (2, 7) and record.segments == 2
    ids = decode_panoptic_png(tmp_path / "ds" / "panoptic" / "street.png")
    np.testing.assert_array_equal(ids, np.where(np.isin(LITERAL_MAP, [2, 7]), 0, LITERAL_MAP))
    semantic = np.asarray(Image.open(tmp_path / "ds" / "semantic" / "street.png"))
    assert set(semantic[np.isin(LITERAL_MAP, [2, 7])].tolist()) == {255}
    manifest = load_json(tmp_path / "ds" / "manifest.json")
    assert manifest["images"][0]["skipped_unassigned"] == 2


def test_image_file_is_copied_byte_for_byte_and_must_match_the_map(tmp_path):
    jpeg = save_jpeg(tmp_path / "Photo.JPG", LITERAL_MAP.shape)
    record = export_result(literal_result(), tmp_path / "ds", image=jpeg)
    assert record.name == "Photo" and record.image.name == "Photo.jpg"
    assert record.image.read_bytes() == jpeg.read_bytes()
    manifest = load_json(tmp_path / "ds" / "manifest.json")
    assert manifest["images"][0]["source_image"] == str(jpeg.resolve())
    wrong = save_jpeg(tmp_path / "wrong.jpg", (7, 8))
    with pytest.raises(DatasetError, match="image is 8x7 but the label map 8x6"):
        export_result(literal_result(), tmp_path / "ds", image=wrong)


def test_bad_names_and_foreign_folders_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="contains '/'"):
        export_result(literal_result(), tmp_path / "ds", image_name="a/b")
    with pytest.raises(DatasetError, match="pass image_name"):
        export_result(literal_result(), tmp_path / "ds")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("precious")
    with pytest.raises(DatasetError, match="not empty and not a napari-odise dataset"):
        export_result(literal_result(), tmp_path / "mine", image_name="x")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir() if p.name != ".lock") == [
        "thesis.docx"
    ]


def test_segment_ids_above_24_bits_are_refused(tmp_path):
    label_map = np.array([[0, 2**24]], dtype=np.int32)
    result = make_result(label_map, {2**24: (1, 0.5, "model")}, small_vocabulary())
    with pytest.raises(DatasetError, match="segment id 16777216 is above 16777215"):
        export_result(result, tmp_path / "ds", image_name="big")


def test_an_image_without_segments_exports_and_reads_back(tmp_path):
    from napari_odise.result import ImageSource, PanopticResult, segments_table

    empty = PanopticResult(np.zeros((3, 4), np.int32), segments_table(), small_vocabulary(),
                           source=ImageSource("blank"))
    assert export_results([], tmp_path / "none") == [] and not (tmp_path / "none").exists()
    record = export_result(empty, tmp_path / "ds")
    assert record.segments == 0 and record.instance_ids == () and record.image is None
    back = open_dataset(tmp_path / "ds").read("blank")
    assert back.segments.empty and not back.label_map.any()
    semantic = np.asarray(Image.open(tmp_path / "ds" / "semantic" / "blank.png"))
    assert (semantic == 255).all()
