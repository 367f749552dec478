"""``napari-odise dataset stats``, run as a user runs it (a subprocess), on a dataset exported
with the model's output known for some images (hand-made results; numbers worked out below)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_odise.io import export_results
from napari_odise.io.layout import DatasetLayout
from napari_odise.io.stable_json import read_json, write_json
from napari_odise.result import ImageSource, PanopticResult
from napari_odise.vocabulary import Vocabulary

VOCABULARY = Vocabulary.parse("cat\ndog\ngrass (stuff)")
CAT, DOG, GRASS = (c.id for c in VOCABULARY)


def result(spans, categories, name) -> PanopticResult:
    """A 10x10 result whose column ranges hold ids 1, 2, ... with these categories."""
    label_map = np.zeros((10, 10), np.int32)
    for segment_id, (start, stop) in enumerate(spans, start=1):
        label_map[:, start:stop] = segment_id
    rows = [{"id": i, "category_id": c} for i, c in enumerate(categories, start=1)]
    return PanopticResult.from_segments_info(label_map, rows, VOCABULARY, source=ImageSource(name))


def stats(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_odise.cli", "dataset", "stats", *args],
        capture_output=True, text=True, timeout=300,
    )


@pytest.fixture
def dataset(tmp_path):
    """Three images: 'same' exported as the model gave it; 'merged' where the person merged the
    model's two cats (50 + 30 px) into one; 'drawn' with no model output known."""
    same_model = result([(0, 5), (8, 10)], [CAT, GRASS], "same")
    merged_model = result([(0, 5), (5, 8), (8, 10)], [CAT, CAT, GRASS], "merged")
    merged = result([(0, 8), (8, 10)], [CAT, GRASS], "merged")
    drawn = result([(0, 10)], [GRASS], "drawn")
    export_results(
        [same_model, merged, drawn], tmp_path / "data", references=[same_model, merged_model, None],
    )
    return tmp_path / "data"


def test_stats_sum_counts_over_the_dataset(dataset):
    # cat: 'same' TP (IoU 1); 'merged' TP (IoU 50/80 = 0.625) and FP (30/80 = 0.375, no match).
    # Summed: TP 2, FP 1, IoU 1.625 -> PQ 1.625 / 2.5 = 65.0, SQ 81.25, RQ 2 / 2.5 = 80.0
    # (the mean of the images' cat PQs would be 70.8). grass: TP 2, IoU 2 -> 100.
    # all = (65 + 100) / 2 = 82.5; SQ (81.25 + 100) / 2 = 90.625; RQ (80 + 100) / 2 = 90.
    done = stats(str(dataset), "--json")
    assert done.returncode == 0, done.stderr
    numbers = json.loads(done.stdout)
    assert (numbers["images"], numbers["compared"], numbers["not_compared"]) == (3, 2, ["drawn"])
    assert numbers["all"]["pq"] == pytest.approx(0.825)
    assert numbers["all"]["sq"] == pytest.approx(0.90625)
    assert numbers["all"]["rq"] == pytest.approx(0.9)
    assert numbers["things"]["pq"] == pytest.approx(0.65) and numbers["stuff"]["pq"] == 1.0
    cat = numbers["categories"][str(CAT)]
    assert (cat["name"], cat["tp"], cat["fp"], cat["fn"]) == ("cat", 2, 1, 0)
    assert cat["pixel_iou"] == 1.0  # the cat pixels are the model's in both images

    table = stats(str(dataset))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "data: 2 of 3 images compared with the model's output (100 = nothing changed)"
    assert "drawn" in lines[1]
    assert next(line for line in lines if line.startswith("all")).split() == ["all", "82.5", "90.6", "90.0", "2"]
    assert next(line for line in lines if line.startswith(f"{CAT} cat")).split()[2:] == [
        "thing", "65.0", "81.2", "80.0", "2", "1", "0", "100.0"
    ]


def test_the_manifest_keeps_a_quality_block_per_image(dataset):
    records = {r["name"]: r for r in read_json(DatasetLayout(dataset).manifest)["images"]}
    assert records["drawn"]["quality"] is None
    assert records["same"]["quality"]["all"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 2}
    merged = records["merged"]["quality"]
    assert merged["things"]["pq"] == pytest.approx(0.625 / 1.5)
    assert merged["categories"][str(CAT)]["fp"] == 1 and merged["ignored"] == 0


def test_a_folder_that_is_not_a_dataset_is_refused_with_status_2(tmp_path):
    done = stats(str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip() == f"napari-odise: error: {tmp_path} is not a napari-odise dataset (no manifest.json)."
    assert done.stdout == ""


def test_a_damaged_quality_block_is_refused_with_status_2(dataset):
    manifest = DatasetLayout(dataset).manifest
    data = read_json(manifest)
    data["images"][0]["quality"] = {"categories": {"1": {"tp": "many"}}}
    write_json(manifest, data)
    done = stats(str(dataset))
    assert done.returncode == 2 and "is damaged" in done.stderr and "Traceback" not in done.stderr


def test_merging_datasets_keeps_the_quality_blocks(dataset, tmp_path):
    from napari_odise.io import merge_datasets

    merge_datasets([dataset], tmp_path / "merged")
    before = {r["name"]: r["quality"] for r in read_json(DatasetLayout(dataset).manifest)["images"]}
    after = {r["name"]: r["quality"] for r in read_json(DatasetLayout(tmp_path / "merged").manifest)["images"]}
    assert after == before and after["merged"] is not None
