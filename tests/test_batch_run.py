"""Batch runs end to end with the tiny model: failures, resume after crashes and SIGKILL,
cancel, shards + merge, a local Dask cluster, and re-labelling a store without the backbone."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import tifffile
import torch
from PIL import Image

from napari_odise import Vocabulary
from conftest import fast_tiny
from napari_odise import Predictor
from napari_odise.batch.files import output_stem
from napari_odise.batch import BatchOptions, BatchStore, ModelSpec, relabel_store, run_batch
from napari_odise.batch.coco import dataset_name
from napari_odise.batch.discovery import ImageFile
from napari_odise.batch.manifest import OutputFolderError
from napari_odise.model.settings import InferenceSettings
from napari_odise.pool import default_pool
from napari_odise.batch.reading import expand, read_item
from napari_odise.cli import main
from napari_odise.image_input import to_rgb_uint8
from napari_odise.io import open_dataset, read_panoptic_png

FAST = {"short_edge": 128, "max_size": 320, "crop_size": 128}
SPEC = ModelSpec("tiny", "cpu", "fp32")
SETTINGS = InferenceSettings.evaluation(**FAST)  # what FAST_ARGS give the CLI
VOCAB_TEXT = "person\ncat\ncup\nbowl\ngrass (stuff)\nsky (stuff)\nwall (stuff)\nfloor (stuff)\n"
VOCAB = Vocabulary.parse(VOCAB_TEXT, name="vocab")  # the name the CLI gives vocab.txt
FAST_ARGS = ["--model", "tiny", "--device", "cpu", "--short-edge", "128", "--max-size", "320", "--crop-size", "128"]
GOOD = ["camera_gray.png", "chelsea_rgba.png", "coffee.jpg", "moon16.tif", "stack.tif#p0", "stack.tif#p1"]
CHECKED_AGAINST_PREDICT = ("chelsea_rgba.png", "moon16.tif", "stack.tif#p1")


@pytest.fixture(scope="module")
def predictor():
    predictor = Predictor(fast_tiny(), device="cpu")
    assert predictor.settings == SETTINGS
    return predictor


@pytest.fixture(autouse=True)
def _shared(predictor):
    """The CLI run in this process finds this predictor in the process's model pool."""
    default_pool().put(SPEC, predictor)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A corrupt file, grayscale, 16-bit TIFF, RGBA PNG, an RGB JPEG and a 2-page TIFF."""
    root = tmp_path_factory.mktemp("images")
    Image.fromarray(skimage.data.coffee()[::4, ::4]).save(root / "coffee.jpg", quality=90)
    Image.fromarray(skimage.data.camera()[::4, ::4]).save(root / "camera_gray.png")
    tifffile.imwrite(root / "moon16.tif", skimage.data.moon()[::4, ::4].astype(np.uint16) * 181)
    chelsea = skimage.data.chelsea()[::3, ::3]
    Image.fromarray(np.dstack([chelsea, np.full(chelsea.shape[:2], 90, np.uint8)])).save(root / "chelsea_rgba.png")
    pages = np.stack([skimage.data.camera()[::4, ::4], skimage.data.coins()[::2, ::2][:128, :128]])
    tifffile.imwrite(root / "stack.tif", pages, photometric="minisblack")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    (root / "vocab.txt").write_text(VOCAB_TEXT)  # not an image suffix: never picked up
    return root


@pytest.fixture(scope="module")
def reference(folder, predictor, tmp_path_factory):
    """The uninterrupted serial run every other run must equal."""
    out = tmp_path_factory.mktemp("reference") / "out"
    summary = run_batch([folder], out, VOCAB, predictor, BatchOptions(coco=True, files=True))
    return out, summary


# --- comparing output folders ------------------------------------------------------------------
def snapshot(out: Path, keys=None) -> dict:
    """Everything a batch wrote (for ``keys`` only, if given), in comparable form (not the
    summary or timestamps)."""
    stems = None if keys is None else {output_stem(k) for k in keys}
    files = {
        p.relative_to(out).as_posix(): p.read_bytes()
        for name in ("panoptic", "segments", "overlay")
        for p in sorted((out / name).rglob("*"))
        if p.is_file() and (stems is None or p.name.rsplit(".", 1)[0] in stems)
    }
    store = BatchStore.open(out / "store.zarr")
    stored = {}
    for key in store.keys():
        if keys is not None and key not in keys:
            continue
        label_map, rows = store.load_labels(key)
        encoded = store.load_encoded(key)
        stored[key] = {
            "label_map": label_map,
            "rows": rows,
            "attrs": store.image_attrs(key),
            "tensors": {n: getattr(encoded, n) for n in ("mask_logits", "mask_embed", "clip_mask_embed")},
        }
    dataset = open_dataset(out / "coco")
    coco = {}
    names = None if keys is None else {dataset_name(k) for k in keys}
    for name in dataset.names:
        if names is not None and name not in names:
            continue
        result = dataset.read(name)
        coco[name] = {
            "label_map": result.label_map,
            "segments": result.segments[["id", "category_id", "area", "score"]].to_dict("records"),
            "image": dataset.image(name).image.read_bytes(),
        }
    return {"files": files, "store": stored, "header": store.header, "labelsets": store.labelset_ids(), "coco": coco}


def assert_same_outputs(a: dict, b: dict, exact: bool = True):
    assert a["header"] == b["header"] and a["labelsets"] == b["labelsets"]
    assert sorted(a["files"]) == sorted(b["files"])
    for path in a["files"]:
        if exact or not path.startswith("segments/"):
            assert a["files"][path] == b["files"][path], path
        else:
            assert_close_rows(json.loads(a["files"][path])["segments_info"], json.loads(b["files"][path])["segments_info"])
    assert sorted(a["store"]) == sorted(b["store"])
    for key, x in a["store"].items():
        y = b["store"][key]
        np.testing.assert_array_equal(x["label_map"], y["label_map"])
        assert x["attrs"] == y["attrs"]
        if exact:
            assert x["rows"] == y["rows"]
        else:
            assert_close_rows(x["rows"], y["rows"])
        for name, tensor in x["tensors"].items():
            if exact:
                assert torch.equal(tensor, y["tensors"][name]), (key, name)
            else:
                torch.testing.assert_close(tensor, y["tensors"][name], atol=1e-4, rtol=1e-4)
    assert sorted(a["coco"]) == sorted(b["coco"])
    for name, x in a["coco"].items():
        y = b["coco"][name]
        np.testing.assert_array_equal(x["label_map"], y["label_map"])
        assert x["image"] == y["image"]
        if exact:
            assert x["segments"] == y["segments"]
        else:
            assert_close_rows(x["segments"], y["segments"])


def assert_close_rows(rows_a, rows_b):
    """Equal rows, scores to float precision (worker processes use another thread count)."""
    assert len(rows_a) == len(rows_b)
    for x, y in zip(rows_a, rows_b):
        assert {k: v for k, v in x.items() if k != "score"} == {k: v for k, v in y.items() if k != "score"}
        assert x.get("score") == pytest.approx(y.get("score"), abs=1e-5)


def assert_no_leftovers(out: Path):
    hidden = [p for p in out.rglob(".*") if p.name not in (".batch.lock", ".lock", ".zattrs", ".zgroup", ".zarray")]
    assert hidden == []


# --- the serial run -----------------------------------------------------------------------------
def test_mixed_folder_completes_with_the_right_failures(reference, folder, predictor):
    out, summary = reference
    assert sorted(summary.done) == GOOD and summary.skipped == []
    assert [f.key for f in summary.failed] == ["broken.png"]
    assert "cannot read .png image" in summary.failed[0].reason
    assert summary.total == 7 and summary.exit_code == 0
    assert json.loads((out / "batch_summary.json").read_text())["failed"] == [
        {"key": "broken.png", "reason": summary.failed[0].reason}
    ]
    assert_no_leftovers(out)
    store = BatchStore.open(out / "store.zarr")
    assert store.keys() == GOOD and store.vocabulary == VOCAB
    for key in GOOD:
        file_key = key.partition("#p")[0]
        (item,) = [i for i in expand(ImageFile(file_key, folder / file_key)) if i.key == key]
        rgb = to_rgb_uint8(read_item(item))
        stored = store.load_result(key)
        if key in CHECKED_AGAINST_PREDICT:  # the batch gives exactly what predict gives
            expected = predictor.predict(rgb, VOCAB)
            np.testing.assert_array_equal(stored.label_map, expected.label_map)
            assert stored.segments.to_dict("records") == expected.segments.to_dict("records")
        assert len(stored.segments) >= 1
        stem = output_stem(key)  # chelsea_rgba.png -> chelsea_rgba, stack.tif#p1 -> stack_p1
        np.testing.assert_array_equal(read_panoptic_png(out / "panoptic" / f"{stem}.png"), stored.label_map)
        overlay = np.asarray(Image.open(out / "overlay" / f"{stem}.png"))
        np.testing.assert_array_equal(overlay, stored.overlay(rgb))
        annotation = json.loads((out / "segments" / f"{stem}.json").read_text())
        assert annotation["image"] == key and (annotation["height"], annotation["width"]) == rgb.shape[:2]
        assert [(s["id"], s["category"], s["area"], s["score"]) for s in annotation["segments_info"]] == [
            (r.id, r.category, r.area, r.score) for r in stored.segments.itertuples()
        ]
    dataset = open_dataset(out / "coco")
    assert dataset.names == ["camera_gray", "chelsea_rgba", "coffee", "moon16", "stack_p0", "stack_p1"]
    # an 8-bit RGB file is copied as it is; everything else is stored as the RGB the model saw
    assert dataset.image("coffee").image.read_bytes() == (folder / "coffee.jpg").read_bytes()
    moon = np.asarray(Image.open(dataset.image("moon16").image))
    np.testing.assert_array_equal(moon, to_rgb_uint8(tifffile.imread(folder / "moon16.tif")))


def test_running_again_redoes_nothing(reference, folder, predictor):
    out, _ = reference
    before = snapshot(out)
    calls = predictor.encode_calls
    summary = run_batch([folder], out, VOCAB, predictor, BatchOptions(coco=True, files=True))
    assert predictor.encode_calls == calls
    assert summary.done == [] and sorted(summary.skipped) == GOOD and [f.key for f in summary.failed] == ["broken.png"]
    assert_same_outputs(snapshot(out), before)


def test_resume_from_half_written_state(reference, folder, predictor, tmp_path):
    """Crash leftovers of every kind: only what is missing is redone, the backbone only where needed."""
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    store = BatchStore.open(out / "store.zarr")
    from napari_odise.batch.publish import new_partial_folder
    from napari_odise.batch.store import safe_name

    shutil.rmtree(store.path / "labels" / store.labels / safe_name("coffee.jpg"))  # killed before its labels
    shutil.rmtree(store.path / "images" / safe_name("moon16.tif"))  # killed before anything
    shutil.rmtree(store.path / "labels" / store.labels / safe_name("moon16.tif"))
    (new_partial_folder(store.path) / "half.zarr").mkdir()  # a group being built
    (out / "overlay" / "chelsea_rgba.png").unlink()  # killed between two files
    (out / "overlay" / ".chelsea_rgba.png.0123456789ab.tmp").write_bytes(b"half")
    calls = predictor.encode_calls
    summary = run_batch([folder], out, VOCAB, predictor, BatchOptions(coco=True, files=True))
    assert sorted(summary.done) == ["chelsea_rgba.png", "coffee.jpg", "moon16.tif"], summary.text()
    assert predictor.encode_calls == calls + 1  # moon16 only: coffee re-classified from its stored tensors
    assert summary.cleaned == 1
    assert_no_leftovers(out)
    assert_same_outputs(snapshot(out), snapshot(reference[0]))


def test_sigkill_mid_run_then_resume_equals_uninterrupted(reference, folder, predictor, tmp_path):
    out = tmp_path / "killed"
    vocab_file = folder / "vocab.txt"
    args = ["segment", str(folder), "--out", str(out), "--vocab", str(vocab_file), "--coco", "--files", "--quiet", *FAST_ARGS]
    process = subprocess.Popen([sys.executable, "-m", "napari_odise.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "segments").glob("*.json")):  # the first image is complete
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the batch never finished an image"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    encoded = len(BatchStore.open(out / "store.zarr").keys())  # images whose tensors are stored
    assert 1 <= encoded < len(GOOD), "killed too late to test anything"
    calls = predictor.encode_calls  # the CLI below reuses this process's predictor (same spec)
    assert main([*args]) == 0
    assert predictor.encode_calls - calls == len(GOOD) - encoded  # finished images are not redone
    summary = json.loads((out / "batch_summary.json").read_text())
    assert [f["key"] for f in summary["failed"]] == ["broken.png"]
    assert sorted(summary["done"] + summary["skipped"]) == GOOD
    assert_no_leftovers(out)
    assert_same_outputs(snapshot(out), snapshot(reference[0]))


class _Killed(BaseException):
    """Stands for SIGKILL at one exact point: nothing below the raise runs."""


def coco_json(out: Path) -> dict:
    """The COCO JSON files byte for byte (the manifest holds export times, so its ids only)."""
    annotations = out / "coco" / "annotations"
    manifest = json.loads((out / "coco" / "manifest.json").read_text())
    return {
        "panoptic": (annotations / "panoptic.json").read_bytes(),
        "instances": (annotations / "instances.json").read_bytes(),
        "ids": {r["name"]: r["image_id"] for r in manifest["images"]},
    }


def test_killed_in_the_second_coco_commit_then_resumed_writes_the_same_ids(reference, folder, predictor, tmp_path, monkeypatch):
    """The second chunk's annotation JSONs are written, its manifest not: the resumed run gives
    those images the ids (and the files the bytes) of an uninterrupted run."""
    from napari_odise.batch import coco
    from napari_odise.io.contents import DatasetContents

    out = tmp_path / "out"
    monkeypatch.setattr(coco, "CHUNK", 4)
    write_manifest = DatasetContents.write_manifest

    def killed_at_the_second_commit(contents, *place):
        if len(contents.records) > 4:
            raise _Killed
        write_manifest(contents, *place)

    monkeypatch.setattr(DatasetContents, "write_manifest", killed_at_the_second_commit)
    with pytest.raises(_Killed):
        run_batch([folder], out, VOCAB, predictor, BatchOptions(coco=True, files=True))
    monkeypatch.setattr(DatasetContents, "write_manifest", write_manifest)
    assert sorted(coco_json(out)["ids"].values()) == [1, 2, 3, 4]
    written = json.loads(coco_json(out)["panoptic"])["images"]
    assert [image["id"] for image in written] == [1, 2, 3, 4, 5, 6]  # 5 and 6 not committed
    assert open_dataset(out / "coco").problems  # the second chunk's entries are leftovers now
    summary = run_batch([folder], out, VOCAB, predictor, BatchOptions(coco=True, files=True))
    assert [f.key for f in summary.failed] == ["broken.png"]
    assert coco_json(out) == coco_json(reference[0])
    assert coco_json(out)["ids"] == {dataset_name(k): i for i, k in enumerate(GOOD, 1)}
    assert open_dataset(out / "coco").problems == ()
    assert_same_outputs(snapshot(out), snapshot(reference[0]))


def test_cancel_then_resume_equals_uninterrupted(reference, folder, predictor, tmp_path):
    out = tmp_path / "out"
    cancel = threading.Event()
    events = []

    def progress(event):
        events.append(event)
        if event.done == 1:
            cancel.set()

    options = BatchOptions(coco=True, files=True, pattern="c*")  # camera_gray, chelsea_rgba, coffee
    first = run_batch([folder], out, VOCAB, predictor, options, progress=progress, cancel=cancel)
    assert first.cancelled and first.done == ["camera_gray.png"]
    assert [(e.done, e.total) for e in events] == [(0, 3), (1, 3)]
    assert events[-1].rate > 0 and events[-1].eta == pytest.approx(2 / events[-1].rate)
    second = run_batch([folder], out, VOCAB, predictor, options)
    assert not second.cancelled and second.skipped == ["camera_gray.png"]
    assert second.done == ["chelsea_rgba.png", "coffee.jpg"]
    keys = ["camera_gray.png", "chelsea_rgba.png", "coffee.jpg"]
    assert_same_outputs(snapshot(out), snapshot(reference[0], keys))


def test_another_vocabulary_into_the_same_folder_is_refused(reference, folder, predictor):
    with pytest.raises(OutputFolderError, match="labels"):
        run_batch([folder], reference[0], Vocabulary.parse("car\nroad (stuff)"), predictor)


# --- scaling out --------------------------------------------------------------------------------
def test_shards_merged_equal_the_serial_run(reference, folder, predictor, tmp_path):
    shards = []
    for index in range(2):
        out = tmp_path / f"shard{index}"
        summary = run_batch([folder], out, VOCAB, predictor, BatchOptions(coco=True, files=True, shard=f"{index}/2"))
        assert summary.shard == f"{index}/2"
        shards.append((out, summary))
    keys = [sorted(s.done + [f.key for f in s.failed]) for _, s in shards]
    assert keys[0] and keys[1] and not set(keys[0]) & set(keys[1])
    merge_args = ["merge", str(shards[0][0]), str(shards[1][0]), "--out", str(tmp_path / "merged")]
    assert main(merge_args) == 0
    assert main(merge_args) == 0  # merging again (e.g. after a killed merge) changes nothing
    assert_same_outputs(snapshot(tmp_path / "merged"), snapshot(reference[0]))
    assert coco_json(tmp_path / "merged")["ids"] == coco_json(reference[0])["ids"]
    assert coco_json(tmp_path / "merged") == coco_json(reference[0])
    merged_summary = json.loads((tmp_path / "merged" / "batch_summary.json").read_text())
    assert merged_summary["done"] == GOOD and [f["key"] for f in merged_summary["failed"]] == ["broken.png"]


def test_local_dask_cluster_equals_the_serial_run(reference, folder, tmp_path):
    out = tmp_path / "dask"
    options = BatchOptions(coco=True, files=True, scheduler="local", workers=2)
    summary = run_batch([folder], out, VOCAB, SPEC, options, settings=SETTINGS)
    assert sorted(summary.done) == GOOD and [f.key for f in summary.failed] == ["broken.png"]
    # workers run PyTorch with one thread each: float sums may round differently in the last bits
    assert_same_outputs(snapshot(out), snapshot(reference[0]), exact=False)


# --- re-labelling -------------------------------------------------------------------------------
def test_relabel_store_without_the_backbone_and_resumably(reference, folder, predictor, tmp_path, monkeypatch):
    out = tmp_path / "relabel"
    shutil.copytree(reference[0], out)
    new = Vocabulary.parse("cat\ndog\ntree\nroad (stuff)\nsky (stuff)\nsea (stuff)", name="outdoor")
    monkeypatch.setattr(predictor.model, "backbone_features", lambda *a, **k: pytest.fail("backbone ran"))
    calls = predictor.encode_calls
    cancel = threading.Event()
    first = relabel_store(out / "store.zarr", new, predictor, progress=lambda e: cancel.set(), cancel=cancel)
    assert first.cancelled and len(first.done) == 1
    assert BatchStore.open(out / "store.zarr").vocabulary == VOCAB  # not switched halfway
    second = relabel_store(out / "store.zarr", new, predictor)
    assert second.skipped == first.done and len(second.done) == len(GOOD) - 1 and not second.failed
    assert predictor.encode_calls == calls
    store = BatchStore.open(out / "store.zarr")
    assert store.vocabulary == new and store.labelset_ids() == [store.labels]
    monkeypatch.undo()
    changed = 0
    for key in ("moon16.tif", "stack.tif#p1"):
        file_key = key.partition("#p")[0]
        (item,) = [i for i in expand(ImageFile(file_key, folder / file_key)) if i.key == key]
        fresh = predictor.predict(to_rgb_uint8(read_item(item)), new)
        relabelled = store.load_result(key)
        np.testing.assert_array_equal(relabelled.label_map, fresh.label_map)
        assert relabelled.segments.to_dict("records") == fresh.segments.to_dict("records")
        changed += set(relabelled.segments["category"]) != set(reference_categories(reference[0], key))
    assert changed >= 1
    assert main(["relabel", str(out), "--vocab", "pascal-voc", "--quiet"]) == 0
    assert BatchStore.open(out / "store.zarr").vocabulary == Vocabulary.preset("pascal-voc")


def reference_categories(out: Path, key: str) -> list[str]:
    return [row["category"] for row in BatchStore.open(out / "store.zarr").load_labels(key)[1]]


def test_float16_store_labels_equal_relabelling_from_it(folder, predictor, tmp_path):
    out = tmp_path / "half"
    options = BatchOptions(store=True, files=False, embeddings="float16", pattern="camera*")
    summary = run_batch([folder], out, VOCAB, predictor, options)
    assert summary.done == ["camera_gray.png"]
    assert not (out / "panoptic").exists() and not (out / "coco").exists()
    store = BatchStore.open(out / "store.zarr")
    for key in summary.done:
        encoded = store.load_encoded(key)
        assert store.load_result(key).segments.to_dict("records") == predictor.classify(encoded, VOCAB).segments.to_dict("records")
    import zarr

    group = zarr.open_group(str(out / "store.zarr"), mode="r")
    assert all(group[f"images/{name}/mask_logits"].dtype == np.float16 for name in os.listdir(out / "store.zarr/images") if not name.startswith("."))


def test_file_names_are_short_clashes_keep_whole_names_and_old_folders_resume(predictor, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    small = skimage.data.coffee()[::4, ::4]
    for name in ("a.png", "b.png"):
        Image.fromarray(small).save(images / name)
    out = tmp_path / "out"
    options = BatchOptions(store=False)
    run_batch([images], out, VOCAB, predictor, options)
    listing = lambda folder: sorted(p.name for p in (out / folder).iterdir())  # noqa: E731
    assert listing("panoptic") == ["a.png", "b.png"] and listing("segments") == ["a.json", "b.json"]
    assert json.loads((out / "batch.json").read_text())["file_names"] == "stem"

    # a.jpg joins a.png: both keep their whole names, and a.png's short-named files make way
    Image.fromarray(small).save(images / "a.jpg", quality=95)
    summary = run_batch([images], out, VOCAB, predictor, options)
    assert sorted(summary.done) == ["a.jpg", "a.png"] and summary.skipped == ["b.png"]
    assert listing("segments") == ["a.jpg.json", "a.png.json", "b.json"]
    assert listing("overlay") == ["a.jpg.png", "a.png.png", "b.png"]
    assert json.loads((out / "segments" / "a.png.json").read_text())["image"] == "a.png"

    # a folder written before short names (whole names, batch.json without file_names) resumes as it was
    for folder, suffix in (("panoptic", ".png"), ("overlay", ".png"), ("segments", ".json")):
        (out / folder / f"b{suffix}").rename(out / folder / f"b.png{suffix}")
    manifest = json.loads((out / "batch.json").read_text())
    del manifest["file_names"]
    (out / "batch.json").write_text(json.dumps(manifest))
    summary = run_batch([images], out, VOCAB, predictor, options)
    assert summary.done == [] and sorted(summary.skipped) == ["a.jpg", "a.png", "b.png"]
    assert listing("segments") == ["a.jpg.json", "a.png.json", "b.png.json"]
