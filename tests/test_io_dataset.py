"""Dataset folders: crash safety, the writer lock, merging shards, growing past 255 categories."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_io_samples import (
    LITERAL_MAP,
    dataset_files,
    literal_result,
    load_json,
    make_result,
    random_image,
    random_result,
    small_vocabulary,
)

import napari_odise.io.contents as contents_module
from napari_odise.io import (
    DatasetError,
    export_result,
    export_results,
    merge_datasets,
    open_dataset,
    read_semantic,
)
from napari_odise.io.layout import DatasetLayout
from napari_odise.io.lock import dataset_lock
from napari_odise.vocabulary import Category, Vocabulary

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _crash_when_writing(monkeypatch, file_name: str, nth: int = 1):
    """Simulate a crash at the ``nth`` write of ``file_name``."""
    real = contents_module.write_json
    count = {"writes": 0}

    def write_json(path, data, **kwargs):
        if path.name == file_name:
            count["writes"] += 1
            if count["writes"] == nth:
                raise KeyboardInterrupt("power cut")  # not an Exception: nothing may catch it
        return real(path, data, **kwargs)

    monkeypatch.setattr(contents_module, "write_json", write_json)


def _every_reference_exists(root):
    """No JSON of the dataset points at a file that is not there (images exported without an
    image file aside: their entry names the file the image should be)."""
    layout = DatasetLayout(root)
    panoptic = load_json(layout.panoptic_json)
    for annotation in panoptic["annotations"]:
        assert (layout.panoptic_dir / annotation["file_name"]).is_file()
    without_file = {r["file_name"] for r in load_json(layout.manifest)["images"]
                    if r["image"] is None}
    for json_path in (layout.panoptic_json, layout.instances_json):
        for image in load_json(json_path)["images"]:
            if image["file_name"] not in without_file:
                assert (layout.images_dir / image["file_name"]).is_file()
    for record in load_json(layout.manifest)["images"]:
        for key in ("image", "panoptic", "semantic"):
            if record[key] is not None:
                assert (root / record[key]).is_file()


def test_crash_between_pngs_and_json_leaves_the_previous_dataset(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    first = literal_result()
    export_result(first, root, image=random_image(LITERAL_MAP.shape), image_name="a")
    before = {k: v for k, v in dataset_files(root).items()}
    _crash_when_writing(monkeypatch, "panoptic.json")
    late = random_result(seed=1)
    with pytest.raises(KeyboardInterrupt):
        export_result(late, root, image=random_image(late.label_map.shape), image_name="b")
    monkeypatch.undo()
    assert (root / "panoptic" / "b.png").is_file()  # the crash came after the PNGs
    assert dataset_files(root)["annotations/panoptic.json"] == before["annotations/panoptic.json"]
    assert dataset_files(root)["manifest.json"] == before["manifest.json"]
    _every_reference_exists(root)
    dataset = open_dataset(root)
    assert dataset.names == ["a"]
    np.testing.assert_array_equal(dataset.read("a").label_map, first.label_map)
    assert any("leftover entries for image ids [2]" in p for p in dataset.problems)
    assert any("leftover file panoptic/b.png" in p for p in dataset.problems)
    # The next export goes through and clears the leftovers.
    record = export_result(late, root, image=random_image(late.label_map.shape), image_name="b")
    assert record.image_id == 2  # the id an uninterrupted export gives it; the leftover is gone
    dataset = open_dataset(root)
    assert dataset.names == ["a", "b"] and dataset.problems == ()
    pd.testing.assert_frame_equal(dataset.read("b").segments, late.segments)
    _every_reference_exists(root)


def test_a_second_writer_is_refused_while_one_holds_the_dataset(tmp_path):
    root = tmp_path / "ds"
    with dataset_lock(DatasetLayout(root).lock):
        with pytest.raises(DatasetError, match="another export is writing"):
            export_result(literal_result(), root, image_name="a")
    export_result(literal_result(), root, image_name="a")
    assert open_dataset(root).names == ["a"]


def test_a_writer_in_another_process_is_refused_and_its_death_frees_the_dataset(tmp_path):
    """A real second process holds the lock (as a running export does); when it is killed, the
    operating system drops the lock and the next export goes through."""
    root = tmp_path / "ds"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from pathlib import Path\n"
         "from napari_odise.io.lock import dataset_lock\n"
         "with dataset_lock(Path(sys.argv[1]) / '.lock'):\n"
         "    print('holding', flush=True)\n"
         "    time.sleep(600)\n",
         str(root)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(DatasetError, match="another export is writing"):
            export_result(literal_result(), root, image_name="a")
        assert not (root / "manifest.json").exists()
    finally:
        holder.kill()
        holder.wait(timeout=60)
    export_result(literal_result(), root, image_name="a")
    assert open_dataset(root).names == ["a"]


def test_merge_appends_shards_with_fresh_ids_and_keeps_provenance(tmp_path):
    shard1, shard2, out = tmp_path / "s1", tmp_path / "s2", tmp_path / "out"
    r1 = literal_result(info={"model": "odise_label_coco_50e"})
    r2, r3 = random_result(seed=7), random_result(seed=8)
    export_result(r1, shard1, image=random_image(LITERAL_MAP.shape), image_name="a")
    export_result(r2, shard2, image_name="b", semantic=False)
    export_result(r3, shard2, image_name="c", instances=False)
    export_result(random_result(seed=9), out, image_name="z")
    records = merge_datasets([shard1, shard2], out)
    assert [(r.name, r.image_id) for r in records] == [("a", 2), ("b", 3), ("c", 4)]
    merged = open_dataset(out)
    assert merged.names == ["z", "a", "b", "c"] and merged.problems == ()
    assert merged.image("a").model == "odise_label_coco_50e"
    assert merged.image("b").semantic is None and not merged.image("c").instances
    for name, original in (("a", r1), ("b", r2), ("c", r3)):
        back = merged.read(name)
        np.testing.assert_array_equal(back.label_map, original.label_map)
        pd.testing.assert_frame_equal(back.segments, original.segments)
    assert (out / "images" / "a.png").read_bytes() == (shard1 / "images" / "a.png").read_bytes()
    instance_ids = [a["id"] for a in load_json(out / "annotations" / "instances.json")
                    ["annotations"]]
    assert instance_ids == list(range(1, len(instance_ids) + 1))
    with pytest.raises(DatasetError, match="already in"):
        merge_datasets([shard1], out)
    export_result(r1, tmp_path / "s3", image_name="b")
    with pytest.raises(DatasetError, match="image 'b' is in both"):
        merge_datasets([shard2, tmp_path / "s3"], tmp_path / "out2")


def test_growing_past_255_categories_rewrites_semantic_pngs_as_16_bit(tmp_path):
    root = tmp_path / "ds"
    first = literal_result()
    export_result(first, root, image_name="a")
    assert np.asarray(Image.open(root / "semantic" / "a.png")).dtype == np.uint8
    extra = [Category(1000 + k, f"kind {k}") for k in range(300)]
    big = Vocabulary((*small_vocabulary(), *extra), name="big")
    second = make_result(LITERAL_MAP, {1: (1299, 0.5, "model"), 2: (1, 0.5, "model"),
                                       4: (3, 0.5, "model"), 7: (149, 0.5, "model")}, big)
    export_result(second, root, image_name="b")
    legend = load_json(root / "annotations" / "semantic_legend.json")
    assert legend["dtype"] == "uint16" and len(legend["classes"]) == 303
    for name, result in (("a", first), ("b", second)):
        pixels = np.asarray(Image.open(root / "semantic" / f"{name}.png"))
        assert pixels.dtype == np.uint16
        assert int(pixels[0, 2]) == 65535
        np.testing.assert_array_equal(read_semantic(root / "semantic" / f"{name}.png", legend),
                                      result.semantic_map(unlabeled=-1))


def test_open_dataset_refuses_folders_that_are_not_datasets(tmp_path):
    with pytest.raises(DatasetError, match="not a napari-odise dataset"):
        open_dataset(tmp_path)
    export_result(literal_result(), tmp_path / "ds", image_name="a")
    (tmp_path / "ds" / "vocabulary.json").unlink()
    with pytest.raises(DatasetError, match="vocabulary.json is missing"):
        open_dataset(tmp_path / "ds")
