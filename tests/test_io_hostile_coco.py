"""Hostile COCO panoptic files and training checkpoints get one-line refusals (issue 15, item 8):
two annotations for one image are refused rather than mixed up; missing keys, wrong types, bomb
PNGs and damaged or code-carrying ``last.pt`` files name what is wrong."""

from __future__ import annotations

import json
import os

import pytest
import torch
from test_io_cli import main
from test_io_samples import LITERAL_MAP, literal_result, random_image
from test_pixel_budget import bomb_png

from napari_odise.errors import UserError
from napari_odise.io import DatasetError, export_results, read_panoptic

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def two_images(tmp_path):
    root = tmp_path / "ds"
    export_results([literal_result(), literal_result()], root,
                   images=[random_image(LITERAL_MAP.shape, 0), random_image(LITERAL_MAP.shape, 1)],
                   image_names=["first", "second"])
    return root / "annotations" / "panoptic.json"


def _edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_two_annotations_for_one_image_are_refused_not_mixed_up(two_images, tmp_path, capsys):
    def duplicate(data):
        data["annotations"][1]["image_id"] = data["annotations"][0]["image_id"]

    _edit(two_images, duplicate)
    with pytest.raises(DatasetError, match=r"image id 1 has two annotations \('first.png' and 'second.png'\)"):
        read_panoptic(two_images)
    code = main(["export", "--panoptic-json", str(two_images), "--out", str(tmp_path / "new")])
    err = capsys.readouterr().err
    assert code != 0 and "two annotations" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_two_images_with_one_id_are_refused(two_images):
    _edit(two_images, lambda d: d["images"][1].__setitem__("id", d["images"][0]["id"]))
    with pytest.raises(DatasetError, match="both have id 1"):
        read_panoptic(two_images)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["annotations"][0]["segments_info"][0].pop("category_id"), "no whole-number 'category_id'"),
        (lambda d: d["annotations"][0]["segments_info"][0].pop("id"), "no whole-number 'id'"),
        (lambda d: d["annotations"][0].__setitem__("segments_info", {"id": 1}), "must be a list"),
        (lambda d: d["annotations"][0]["segments_info"].__setitem__(0, 7), "not a segment object"),
        (lambda d: d["annotations"][0]["segments_info"][0].__setitem__("score", "high"), "not a number"),
        (lambda d: d["annotations"][0].pop("image_id"), "whole-number 'image_id'"),
        (lambda d: d["images"][0].pop("file_name"), "needs a whole-number 'id' and a 'file_name'"),
        (lambda d: d["images"][0].__setitem__("id", "1"), "needs a whole-number 'id'"),
    ],
)
def test_malformed_entries_are_one_line_refusals(two_images, change, message):
    _edit(two_images, change)
    with pytest.raises(DatasetError, match=message) as caught:
        read_panoptic(two_images)
    assert "\n" not in str(caught.value)


def test_a_bomb_png_in_a_coco_file_is_refused_in_one_line(two_images, tmp_path, capsys):
    bomb_png(two_images.parent.parent / "panoptic" / "first.png", 12000, 12000)
    code = main(["export", "--panoptic-json", str(two_images), "--out", str(tmp_path / "new")])
    err = capsys.readouterr().err
    assert code != 0 and "12000x12000" in err and "Traceback" not in err


# --- last.pt ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trainer_setup(tmp_path_factory):
    from synthetic_scenes import write_dataset

    folder = tmp_path_factory.mktemp("scenes")
    write_dataset(folder, 8, size=64)
    return folder


def _trainer(dataset, output):
    from conftest import fast_tiny

    from napari_odise.train.criterion import LossWeights
    from napari_odise.train.finetune import FinetuneConfig, Finetuner

    config = FinetuneConfig(
        dataset=str(dataset), output=str(output), base_model="tiny", steps=2, batch_size=2,
        image_size=64, warmup_steps=1, val_every=0, checkpoint_every=1, device="cpu",
        val_fraction=0.25, loss=LossWeights(num_points=256),
    )
    return Finetuner(config, model=fast_tiny(short_edge=64, crop_size=64))


def _run_payload():
    return os.getcwd  # stands for any callable a hostile pickle names


class _Runs:
    def __reduce__(self):
        return (_run_payload(), ())


@pytest.mark.parametrize("kind", ["garbage", "code", "list", "missing", "bad step", "bad history"])
def test_a_hostile_last_pt_is_one_refusal_naming_it(trainer_setup, tmp_path, kind):
    from napari_odise.train.errors import ResumeCheckpointError

    output = tmp_path / "out"
    _trainer(trainer_setup, output).run()
    last = output / "last.pt"
    state = torch.load(last, weights_only=True)
    if kind == "garbage":
        last.write_bytes(b"not a checkpoint at all")
    elif kind == "code":
        torch.save({"config": _Runs()}, last)
    elif kind == "list":
        torch.save([1, 2, 3], last)
    elif kind == "missing":
        torch.save({k: v for k, v in state.items() if k != "optimizer"}, last)
    elif kind == "bad step":
        torch.save({**state, "step": "many"}, last)
    else:
        torch.save({**state, "history": json.dumps({"a": 1})}, last)
    with pytest.raises(ResumeCheckpointError, match="last.pt") as caught:
        _trainer(trainer_setup, output)
    message = str(caught.value)
    assert isinstance(caught.value, UserError) and "\n" not in message
    assert "Delete it" in message
    if kind == "code":
        assert "nothing from it was executed" in message
