"""``napari-odise relabel``: a store's images under a new vocabulary, from the cached tensors.

    napari-odise relabel results/ --vocab ade20k
    napari-odise relabel results/store.zarr --vocab my_categories.txt --settings demo

No backbone runs (the model's text encoder and heads do the work: seconds for thousands of
images). The store switches to the new labels only when every image has them. Exit codes: 0 done;
1 some images could not be re-labelled (the store keeps its old labels); 2 bad usage; 130
interrupted (run again to resume).
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_odise.cli.refusals import INTERRUPTED, refuse
from napari_odise.errors import UserError



def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "relabel",
        help="re-label a batch store with a new vocabulary (no backbone)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("store", type=Path, metavar="STORE", help="a store.zarr, or the batch output folder holding one")
    parser.add_argument("--vocab", required=True, metavar="PRESET|FILE")
    parser.add_argument("--device", default="auto")
    from napari_odise.models import SETTINGS_NAMES

    parser.add_argument("--settings", choices=SETTINGS_NAMES, help="classification settings (default: the store's)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from napari_odise.batch import TerminalProgress, relabel_store
    from napari_odise.batch.relabel import store_path_of
    from napari_odise.batch.vocabularies import load_vocabulary

    progress = TerminalProgress(disable=args.quiet)
    try:
        vocabulary = load_vocabulary(args.vocab)
        summary = relabel_store(
            store_path_of(args.store), vocabulary, settings=args.settings,
            device=args.device, progress=progress,
        )
    except KeyboardInterrupt:
        progress.close()
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return INTERRUPTED
    except UserError as error:  # closes the progress bar before the message; anything else is a bug
        progress.close()
        return refuse(error)
    progress.close()
    print(summary.text().replace("segmented", "re-labelled"))
    if summary.failed:
        print("the store keeps its previous labels until every image is re-labelled", file=sys.stderr)
        return 1
    return 0
