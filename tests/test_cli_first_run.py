"""The README's first run, as a newcomer types it: ``napari-odise segment --sample astronaut
--model tiny --settings demo --out DIR`` in a fresh process (offline, own napari-odise home). The
result must show segments, and the command must say what was written and what it means."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_odise.batch.summary import BatchSummary
from napari_odise.cli import build_parser
from napari_odise.cli.segment import what_was_written
from napari_odise.batch import BatchOptions

README_RUN = ["segment", "--sample", "astronaut", "--model", "tiny", "--settings", "demo"]


def napari_odise(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess:
    """The installed ``napari-odise`` command (the venv's script), offline, with its own home."""
    command = Path(sys.executable).with_name("napari-odise")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NAPARI_ODISE_HOME": str(home)}
    done = subprocess.run([str(command), *args], capture_output=True, text=True, env=env, timeout=900)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """The README's first run, once for this module: (output folder, its stdout, home)."""
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("first") / "odise-out"
    done = napari_odise(*README_RUN, "--out", str(out), home=home)
    # the model load is announced, and its end (stderr is not a terminal here: two lines)
    assert "loading model tiny on auto ...\n" in done.stderr and "loading model tiny on auto: done in" in done.stderr
    return out, done.stdout, home


def test_first_run_writes_segments_that_show_on_the_overlay(first_run):
    out, stdout, _home = first_run
    annotation = json.loads((out / "segments" / "astronaut.json").read_text())
    assert len(annotation["segments_info"]) >= 2
    image = np.asarray(Image.open(out / "samples" / "astronaut.png"))
    overlay = np.asarray(Image.open(out / "overlay" / "astronaut.png"))
    changed = np.any(overlay != image, axis=-1).mean()
    assert changed > 0.5  # the segments are drawn over most of the picture
    assert "1 segmented, 0 already done, 0 failed (of 1)" in stdout
    assert f"look at: {out / 'overlay'}/" in stdout
    assert "tiny model has random weights" in stdout and "labels mean nothing" in stdout


def test_an_empty_result_says_why_and_what_to_try(tmp_path):
    args = build_parser().parse_args(["segment", "--sample", "astronaut", "--model", "tiny", "--out", str(tmp_path)])
    lines = what_was_written(BatchSummary(total=1, done=["astronaut.png"], empty=["astronaut.png"]), args, BatchOptions())
    assert any("--settings demo keeps them" in line for line in lines)
    assert BatchSummary(total=2, done=["a.png", "b.png"], empty=["a.png"]).text().splitlines()[1] == "1 image kept no segment: a.png"
    args = build_parser().parse_args(["segment", "x.png", "--out", str(tmp_path), "--settings", "demo"])
    lines = what_was_written(BatchSummary(total=1, done=["x.png"]), args, BatchOptions())
    assert not any("note:" in line for line in lines)  # segments kept, the official model: nothing to explain


def test_relabel_leaves_one_consistent_folder_that_segment_extends(first_run, tmp_path):
    from napari_odise import Vocabulary
    from napari_odise.batch import BatchStore
    from napari_odise.io import read_panoptic_png

    source, _stdout, home = first_run
    out = tmp_path / "odise-out"
    shutil.copytree(source, out)
    relabelled = napari_odise("relabel", str(out), "--vocab", "ade20k", "--quiet", home=home)
    assert "1 re-labelled, 0 already done, 0 failed (of 1)" in relabelled.stdout

    store = BatchStore.open(out / "store.zarr")
    ade20k = Vocabulary.preset("ade20k")
    assert store.vocabulary.name == ade20k.name
    result = store.load_result("astronaut.png")
    annotation = json.loads((out / "segments" / "astronaut.json").read_text())
    assert annotation["vocabulary"] == ade20k.name and annotation["labels"] == store.labels
    names = {category.name for category in ade20k.categories}
    assert annotation["segments_info"] and all(s["category"] in names for s in annotation["segments_info"])
    assert [s["category"] for s in annotation["segments_info"]] == result.segments["category"].tolist()
    np.testing.assert_array_equal(read_panoptic_png(out / "panoptic" / "astronaut.png"), result.label_map)
    image = np.asarray(Image.open(out / "samples" / "astronaut.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "overlay" / "astronaut.png")), result.overlay(image))
    manifest = json.loads((out / "batch.json").read_text())
    assert (manifest["vocabulary"], manifest["labels"]) == (ade20k.name, store.labels)

    # the folder now resumes and grows under the new vocabulary, and refuses the old one
    extended = napari_odise(*README_RUN, "--sample", "coffee", "--vocab", "ade20k", "--out", str(out), "--quiet", home=home)
    assert "1 segmented, 1 already done, 0 failed (of 2)" in extended.stdout
    coffee = json.loads((out / "segments" / "coffee.json").read_text())
    assert coffee["vocabulary"] == ade20k.name and coffee["labels"] == store.labels



def test_a_folder_refuses_another_vocabulary(first_run, tmp_path, capsys):
    from napari_odise.cli import main

    source, _stdout, _home = first_run
    out = tmp_path / "odise-out"
    shutil.copytree(source, out)
    assert main([*README_RUN, "--vocab", "ade20k", "--out", str(out), "--quiet"]) == 2  # refused before loading
    assert "holds results made differently" in capsys.readouterr().err


def test_export_reads_the_segment_output_folder(first_run, tmp_path):
    from napari_odise.io import open_dataset, read_panoptic_png

    out, _stdout, home = first_run
    done = napari_odise("export", "--batch", str(out), "--out", str(tmp_path / "dataset"), home=home)
    assert "exported 1 image(s)" in done.stdout
    dataset = open_dataset(tmp_path / "dataset")
    assert dataset.names == ["astronaut"]
    result = dataset.read("astronaut")
    annotation = json.loads((out / "segments" / "astronaut.json").read_text())
    np.testing.assert_array_equal(result.label_map, read_panoptic_png(out / "panoptic" / "astronaut.png"))
    assert result.segments["category"].tolist() == [s["category"] for s in annotation["segments_info"]]
    assert dataset.image("astronaut").image is not None  # the image came along (from the recorded source)
    # the folder holds the model's output as it is: nothing changed, PQ 1 (dataset stats)
    stats = json.loads(napari_odise("dataset", "stats", str(tmp_path / "dataset"), "--json", home=home).stdout)
    assert (stats["compared"], stats["all"]["pq"], stats["all"]["n"]) == (1, 1.0, result.segments["category_id"].nunique())
