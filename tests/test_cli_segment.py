"""``napari-odise segment`` on real sample images with the tiny model: the written files say
what the model found (checked against the Predictor), and usage errors exit with 2."""

import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

from napari_odise import Vocabulary
from conftest import fast_tiny
from napari_odise import Predictor
from napari_odise.models import ModelSpec
from napari_odise.pool import default_pool
from napari_odise.cli import main
from napari_odise.io import read_panoptic_png

FAST_ARGS = ["--model", "tiny", "--device", "cpu", "--short-edge", "128", "--max-size", "320", "--crop-size", "128"]
SAMPLES = {"astronaut.png": "astronaut", "coffee.jpg": "coffee", "chelsea.png": "chelsea", "camera.png": "camera"}


@pytest.fixture(scope="module")
def predictor():
    return Predictor(fast_tiny(), device="cpu")  # the settings FAST_ARGS give the CLI


@pytest.fixture(autouse=True)
def _shared(predictor):
    """The CLI below finds this predictor in the process's model pool (the spec FAST_ARGS name)."""
    default_pool().put(ModelSpec("tiny", "cpu"), predictor)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("samples")
    for name, sample in SAMPLES.items():
        Image.fromarray(getattr(skimage.data, sample)()).save(folder / name, **({"quality": 95} if name.endswith("jpg") else {}))
    return folder


def test_segment_folder_writes_panoptic_png_segments_json_and_overlay(samples, predictor, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(samples), "--out", str(out), "--quiet", *FAST_ARGS]) == 0  # --vocab coco
    printed = capsys.readouterr().out
    assert "4 segmented, 0 already done, 0 failed (of 4)" in printed
    vocabulary = Vocabulary.preset("coco")
    found = 0
    for name in SAMPLES:
        image = np.asarray(Image.open(samples / name).convert("RGB"))
        expected = predictor.predict(image, vocabulary)
        stem = name.rsplit(".", 1)[0]  # astronaut.png -> panoptic/astronaut.png, segments/astronaut.json
        ids = read_panoptic_png(out / "panoptic" / f"{stem}.png")
        np.testing.assert_array_equal(ids, expected.label_map)
        annotation = json.loads((out / "segments" / f"{stem}.json").read_text())
        assert (annotation["height"], annotation["width"]) == image.shape[:2]
        assert annotation["file_name"] == f"{stem}.png" and annotation["model"] == "tiny"
        segments = annotation["segments_info"]
        found += len(segments)
        assert sorted(s["id"] for s in segments) == sorted(set(np.unique(ids).tolist()) - {0})
        for segment in segments:
            mask = ids == segment["id"]
            rows, columns = np.nonzero(mask)
            assert segment["area"] == mask.sum()
            x0, y0 = columns.min(), rows.min()
            assert segment["bbox"] == [x0, y0, columns.max() - x0 + 1, rows.max() - y0 + 1]
            category = vocabulary.by_id(segment["category_id"])
            assert (segment["category"], segment["isthing"]) == (category.name, int(category.isthing))
            assert 0.0 <= segment["score"] <= 1.0 and segment["iscrowd"] == 0
        overlay = np.asarray(Image.open(out / "overlay" / f"{stem}.png"))
        np.testing.assert_array_equal(overlay[ids == 0], image[ids == 0])  # unlabeled pixels untouched
        np.testing.assert_array_equal(overlay, expected.overlay(image))
    assert found >= 2  # random weights, but not an empty result
    summary = json.loads((out / "batch_summary.json").read_text())
    assert summary["done"] == sorted(SAMPLES) and summary["failed"] == []
    # once more: everything is already there
    assert main(["segment", str(samples), "--out", str(out), "--quiet", *FAST_ARGS]) == 0
    assert "0 segmented, 4 already done" in capsys.readouterr().out


def test_usage_errors_exit_with_2_and_say_why(samples, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["segment", str(empty), "--out", str(tmp_path / "o1"), *FAST_ARGS], "no images found"),
        (["segment", str(samples), "--out", str(tmp_path / "o2"), "--shard", "2/2", *FAST_ARGS], "shard"),
        (["segment", str(samples), "--out", str(tmp_path / "o3"), "--vocab", "no-such-preset", *FAST_ARGS], "preset"),
        (["segment", str(samples), "--out", str(tmp_path / "o4"), "--no-store", "--no-files", *FAST_ARGS], "nothing to write"),
        (["segment", str(samples), "--out", str(tmp_path / "o5"), "--model", "official", "--device", "cpu"], "weights"),
        (["relabel", str(tmp_path / "nowhere"), "--vocab", "coco"], "no store"),
        (["merge", str(empty), "--out", str(tmp_path / "o6")], "not a batch output folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    # a model that cannot load leaves no trace in the output folder
    assert not (tmp_path / "o5" / "store.zarr").exists() and not (tmp_path / "o5" / "batch.json").exists()


def test_segment_a_bundled_sample(predictor, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", "--sample", "coffee", "--out", str(out), "--quiet", *FAST_ARGS]) == 0
    saved = out / "samples" / "coffee.png"
    np.testing.assert_array_equal(np.asarray(Image.open(saved)), skimage.data.coffee())
    ids = read_panoptic_png(out / "panoptic" / "coffee.png")
    np.testing.assert_array_equal(ids, predictor.predict(skimage.data.coffee(), Vocabulary.preset("coco")).label_map)
    assert main(["segment", "--sample", "nope", "--out", str(out), *FAST_ARGS]) == 2
    assert "astronaut" in capsys.readouterr().err


def test_ctrl_c_during_the_run_closes_the_bar_and_exits_130(samples, tmp_path, capsys, monkeypatch):
    import napari_odise.batch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(napari_odise.batch, "run_batch", interrupted)
    status = main(["segment", str(samples), "--out", str(tmp_path / "out"), "--quiet", *FAST_ARGS])
    assert status == 130
    assert "interrupted: run the same command again to resume" in capsys.readouterr().err
