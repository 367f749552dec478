"""``napari-odise merge``: join the output folders of sharded runs into one.

    napari-odise merge shard-0/ shard-1/ shard-2/ --out results/

Store, per-image files and COCO dataset are merged (whichever the shards have); a killed merge
resumes. Exit codes: 0 merged; 2 the folders cannot be merged (the message says why).
"""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "merge", help="merge the outputs of sharded batch runs",
        description="Join the output folders of sharded `segment --shard I/N` runs into one: the store, the "
        "per-image files and the COCO dataset (whichever the shards have). A killed merge resumes. Exit "
        "codes: 0 merged; 2 the folders cannot be merged (the message says why).",
    )
    parser.add_argument("sources", nargs="+", type=Path, metavar="SHARD_DIR", help="the output folders of the shards")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="the merged output folder (created if missing)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from napari_odise.batch import merge_outputs

    summary = merge_outputs(args.sources, args.out)  # a MergeError is a refusal: exit 2 (cli.refusals)
    print(summary.text())
    return 0
