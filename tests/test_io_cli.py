"""``napari-odise export``: converting a COCO panoptic dataset, and single label maps."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image
from test_io_samples import (
    LITERAL_MAP,
    dataset_files,
    literal_result,
    random_image,
    save_jpeg,
    small_vocabulary,
)

from napari_odise.cli import SUBCOMMANDS, run
from napari_odise.cli import export as export_command
from napari_odise.io import DatasetError, export_result, export_results, open_dataset

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def main(argv: list[str]) -> int:
    """``napari-odise ARGV`` with only the export subcommand registered: the other subcommands'
    imports (torch) are not what these tests are about."""
    import argparse

    assert "export" in SUBCOMMANDS
    parser = argparse.ArgumentParser(prog="napari-odise")
    export_command.register(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(argv))  # refusals reported as `napari-odise export` reports them


def test_convert_panoptic_json_into_a_new_dataset_is_lossless(tmp_path, capsys):
    export_result(literal_result(), tmp_path / "a", image=random_image(LITERAL_MAP.shape),
                  image_name="street")
    code = main(["export", "--panoptic-json", str(tmp_path / "a/annotations/panoptic.json"),
                 "--out", str(tmp_path / "b"), "--instances", "--semantic"])
    assert code == 0
    assert "exported 1 image(s)" in capsys.readouterr().out
    before, after = dataset_files(tmp_path / "a"), dataset_files(tmp_path / "b")
    assert sorted(before) == sorted(after)
    assert all(before[k] == after[k] for k in before if k != "manifest.json")
    # Without the flags only the panoptic kind is written; a repeated name needs --overwrite.
    code = main(["export", "--panoptic-json", str(tmp_path / "a/annotations/panoptic.json"),
                 "--out", str(tmp_path / "b")])
    assert code == 1
    assert "already in" in capsys.readouterr().err
    assert main(["export", "--panoptic-json", str(tmp_path / "a/annotations/panoptic.json"),
                 "--out", str(tmp_path / "c")]) == 0
    assert sorted(dataset_files(tmp_path / "c")) == [
        "annotations/panoptic.json", "images/street.png", "manifest.json", "panoptic/street.png",
        "vocabulary.json",
    ]


class _Killed(BaseException):
    """Stands for SIGKILL at one exact point: nothing below the raise runs."""


def test_export_killed_in_its_second_chunk_completes_when_run_again(tmp_path, monkeypatch, capsys):
    from napari_odise.io.contents import DatasetContents
    from test_io_samples import random_result

    results = [random_result(seed) for seed in (1, 2, 3)]
    images = [random_image(r.label_map.shape, seed) for seed, r in enumerate(results)]
    export_results(results, tmp_path / "source", images, ["a", "b", "c"], instances=True)
    args = ["export", "--panoptic-json", str(tmp_path / "source/annotations/panoptic.json"),
            "--instances", "--out"]
    assert main([*args, str(tmp_path / "whole")]) == 0
    monkeypatch.setattr(export_command, "CHUNK", 2)  # chunks {a, b} and {c}
    write_manifest = DatasetContents.write_manifest

    def killed_at_the_second_commit(contents, *place):
        if len(contents.records) > 2:
            raise _Killed
        write_manifest(contents, *place)

    monkeypatch.setattr(DatasetContents, "write_manifest", killed_at_the_second_commit)
    with pytest.raises(_Killed):
        main([*args, str(tmp_path / "killed")])
    monkeypatch.setattr(DatasetContents, "write_manifest", write_manifest)
    assert open_dataset(tmp_path / "killed").names == ["a", "b"]
    capsys.readouterr()
    assert main([*args, str(tmp_path / "killed")]) == 0  # not "already in": the append completes
    assert "exported 3 image(s)" in capsys.readouterr().out
    whole, killed = dataset_files(tmp_path / "whole"), dataset_files(tmp_path / "killed")
    assert sorted(whole) == sorted(killed)
    assert [k for k in whole if whole[k] != killed[k] and k != "manifest.json"] == []
    ids = [{n: d.image(n).image_id for n in d.names} for d in map(open_dataset, (tmp_path / "whole", tmp_path / "killed"))]
    assert ids[0] == ids[1] == {"a": 1, "b": 2, "c": 3}
    assert open_dataset(tmp_path / "killed").problems == ()
    # Other annotations under a taken name are still refused, naming both spellings of the flag.
    other = random_result(9)
    with pytest.raises(DatasetError, match=r"\['c'\] are already in .*overwrite=True \(on the "
                       r"command line --overwrite\)"):
        export_results([other], tmp_path / "killed", [images[2]], ["c"], instances=True,
                       skip_unchanged=True)


def test_category_map_png_becomes_segments(tmp_path):
    # person (1) in two separate blobs -> two instances; road (149, stuff) -> one segment.
    category_map = np.array(
        [[1, 1, 0, 149], [0, 0, 0, 149], [1, 0, 149, 149]], dtype=np.uint8
    )
    Image.fromarray(category_map).save(tmp_path / "labels.png")
    save_jpeg(tmp_path / "scene.jpg", category_map.shape)
    code = main(["export", "--labels", str(tmp_path / "labels.png"), "--image",
                 str(tmp_path / "scene.jpg"), "--vocab", "coco", "--out", str(tmp_path / "ds"),
                 "--instances"])
    assert code == 0
    result = open_dataset(tmp_path / "ds").read("scene")
    assert result.segments["category"].tolist() == ["person", "person", "road"]
    assert result.segments["area"].tolist() == [2, 1, 4]
    np.testing.assert_array_equal(
        result.label_map, [[1, 1, 0, 3], [0, 0, 0, 3], [2, 0, 3, 3]]
    )
    assert (tmp_path / "ds" / "images" / "scene.jpg").read_bytes() == (
        tmp_path / "scene.jpg").read_bytes()


def test_segment_map_tiff_with_a_table(tmp_path):
    tifffile.imwrite(tmp_path / "ids.tif", LITERAL_MAP.astype(np.uint16) * 1000)
    (tmp_path / "segments.csv").write_text(
        "id,category_id,score,source\n1000,1,0.5,model\n2000,1,,edited\n4000,3,0.25,model\n"
        "7000,149,0.75,model\n"
    )
    small_vocabulary().save(tmp_path / "vocab.json")
    save_jpeg(tmp_path / "img.jpg", LITERAL_MAP.shape)
    code = main(["export", "--labels", str(tmp_path / "ids.tif"), "--segments",
                 str(tmp_path / "segments.csv"), "--image", str(tmp_path / "img.jpg"), "--vocab",
                 str(tmp_path / "vocab.json"), "--out", str(tmp_path / "ds"), "--name", "tile"])
    assert code == 0
    result = open_dataset(tmp_path / "ds").read("tile")
    np.testing.assert_array_equal(result.label_map, LITERAL_MAP * 1000)
    assert result.segments["source"].tolist() == ["model", "edited", "model", "model"]
    assert np.isnan(result.segments["score"].iloc[1])


def test_category_map_with_category_zero_needs_the_unlabeled_value(tmp_path, capsys):
    Image.fromarray(np.array([[0, 0], [255, 0]], dtype=np.uint8)).save(tmp_path / "l.png")
    save_jpeg(tmp_path / "room.jpg", (2, 2))
    arguments = ["export", "--labels", str(tmp_path / "l.png"), "--image",
                 str(tmp_path / "room.jpg"), "--vocab", "ade20k", "--out", str(tmp_path / "ds")]
    assert main(arguments) == 1  # 0 is ADE20K's wall
    assert "category id 0 is in vocabulary" in capsys.readouterr().err
    assert not (tmp_path / "ds" / "manifest.json").exists()
    assert main([*arguments, "--unlabeled", "255"]) == 0
    result = open_dataset(tmp_path / "ds").read("room")
    assert result.segments["category"].tolist() == ["wall"]
    assert result.segments["area"].tolist() == [3]
