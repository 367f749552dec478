"""``napari-odise dataset stats DATASET``: how much the people changed the model's output,
summed over a dataset.

    napari-odise dataset stats corrected/            # a table
    napari-odise dataset stats corrected/ --json     # the same numbers for scripts

Each image whose manifest record has a ``quality`` block (the model's output was known when it was
exported: Segment widget layers, segment output folders, batch COCO datasets) adds its counts per
category; PQ/SQ/RQ are then averaged over categories once (panopticapi's way, not a mean of the
images' PQs; see :mod:`napari_odise.quality`). Images without the block are counted and named.
Run it on the datasets corrected before and after fine-tuning (same images) to see whether the
model needs fewer corrections. Exit codes: 0 printed; 2 the folder is not a readable dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

SHOWN_MISSING = 5


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dataset", help="look into a dataset folder (stats)",
        description="Look into a napari-odise dataset folder.",
    )
    commands = parser.add_subparsers(dest="dataset_command", metavar="COMMAND", required=True)
    stats = commands.add_parser(
        "stats", help="how much people changed the model's output (PQ/SQ/RQ, per-category IoU)",
        description="PQ, SQ and RQ (all categories, things, stuff) and per-category IoU of the model's "
        "output against the corrected annotations, summed over the dataset's images: 100 means nothing "
        "was changed. Compare a dataset corrected before fine-tuning with one corrected after, on the same "
        "images. Exit codes: 0 printed; 2 the folder is not a readable dataset.",
    )
    stats.add_argument("dataset", type=Path, metavar="DATASET", help="a dataset folder written by napari-odise")
    stats.add_argument("--json", action="store_true", help="print the numbers as JSON instead of tables")
    stats.set_defaults(func=run_stats)


def run_stats(args) -> int:
    from napari_odise.io.dataset import open_dataset
    from napari_odise.io.dataset_quality import dataset_quality

    dataset = open_dataset(args.dataset)  # not a dataset: a DatasetError, status 2 (cli.refusals)
    summed = dataset_quality(dataset)
    if args.json:
        print(json.dumps(summed.to_json(dataset.vocabulary), indent=2))
    else:
        print(summed.text(dataset.vocabulary, dataset.root.name))
    return 0
