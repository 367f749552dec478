"""``napari-odise relabel``: a batch output folder's images under a new vocabulary, from the cached tensors.

    napari-odise relabel results/ --vocab ade20k
    napari-odise relabel results/store.zarr --vocab my_categories.txt --settings demo

No backbone runs (the model's text encoder and heads do the work: seconds for thousands of
images). The store switches to the new labels only when every image has them; the folder's
per-image files and batch.json follow. Exit codes: 0 done;
1 some images could not be re-labelled (the store keeps its old labels); 2 bad usage; 130
interrupted (run again to resume).
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_odise.cli.progress_bar import progress_bar


def register(subparsers) -> None:
    from napari_odise.models import DEVICES, SETTINGS_NAMES

    parser = subparsers.add_parser(
        "relabel",
        help="re-label a batch output folder with a new vocabulary (no backbone)",
        description="Give every image of a batch output folder (or store) labels under a new vocabulary, "
        "from the tensors cached by `segment`: no backbone runs. The store, each image's segments JSON, "
        "panoptic PNG and overlay, and batch.json all switch to the new labels, so `segment` with the new "
        "vocabulary resumes the folder. Killed halfway, run it again to finish (the store keeps its old "
        "labels until every image has the new ones). Exit codes: 0 done; 1 some images could not be re-labelled; 2 bad usage; 130 interrupted.",
    )
    parser.add_argument("store", type=Path, metavar="DIR", help="a batch output folder (or the store.zarr in it)")
    parser.add_argument("--vocab", required=True, metavar="PRESET|FILE", help="the new vocabulary: a preset name, or a .json/.txt file")
    parser.add_argument("--device", default="auto", help=f"where the text encoder and heads run: {', '.join(DEVICES)}, cuda:1, ... (default: auto)")
    parser.add_argument(
        "--settings", choices=SETTINGS_NAMES,
        help="classification settings (ensemble weights, merge thresholds) (default: the ones the folder was made with)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar (default: off)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from napari_odise.batch import relabel_store
    from napari_odise.batch.relabel import store_path_of
    from napari_odise.batch.vocabularies import load_vocabulary

    with progress_bar(args.quiet) as progress:
        vocabulary = load_vocabulary(args.vocab)
        summary = relabel_store(
            store_path_of(args.store), vocabulary, settings=args.settings,
            device=args.device, progress=progress,
        )
    print(summary.text().replace("segmented", "re-labelled"))
    if summary.failed:
        print("the store keeps its previous labels until every image is re-labelled", file=sys.stderr)
        return 1
    return 0
