"""``napari-odise export``: build or extend a dataset folder for fine-tuning.

Three sources:

* ``--panoptic-json FILE``: a COCO panoptic dataset made elsewhere (or another napari-odise
  dataset's ``annotations/panoptic.json``), converted into our layout, appended to ``--out``;
* ``--labels FILE --image IMG --vocab VOCAB``: one label map saved as PNG/TIFF. With
  ``--segments TABLE`` its values are segment ids; without, category ids (see
  :mod:`napari_odise.io.label_files`);
* ``--batch DIR``: the output folder of ``napari-odise segment`` (segments JSON + panoptic PNG
  per image, the vocabulary from its store or ``--vocab``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_odise.cli.refusals import refuse
from napari_odise.io.coco_panoptic import PanopticReader
from napari_odise.io.dataset import open_dataset
from napari_odise.io.errors import DatasetError
from napari_odise.io.export import export_result, export_results
from napari_odise.io.label_files import (
    read_label_image,
    read_segments_table,
    result_from_category_map,
    result_from_segment_map,
)
from napari_odise.vocabulary import Vocabulary, VocabularyError

CHUNK = 64  # images per write when converting a COCO file


def _export_chunk(args, results, images=None, names=None, references=None) -> int:
    """Export one chunk; returns how many of its images the dataset already held exactly as
    given (committed by an earlier run of this export that was killed: re-running completes it).
    ``references``: the model's output per result, for the manifest's quality numbers."""
    records = export_results(results, args.out, images, names, instances=args.instances,
                             semantic=args.semantic, overwrite=args.overwrite, skip_unchanged=True,
                             references=references)
    return len(results) - len(records)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write annotations into a dataset folder (COCO panoptic, instances, semantic)",
        description=(
            "Append annotations to a napari-odise dataset folder (created if missing): the "
            "panoptic PNGs and JSON always, COCO instances and semantic PNGs on request."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--panoptic-json", type=Path, metavar="JSON",
                        help="a COCO panoptic JSON to convert (PNGs and images found beside it)")
    source.add_argument("--labels", type=Path, metavar="FILE",
                        help="one label map as PNG/TIFF (needs --image and --vocab)")
    source.add_argument("--batch", type=Path, metavar="DIR",
                        help="the output folder of `napari-odise segment` (its segments JSON and panoptic PNGs; "
                        "the vocabulary from its store, or --vocab)")
    parser.add_argument("--out", type=Path, required=True, metavar="DATASET",
                        help="dataset folder to create or append to")
    parser.add_argument("--instances", action="store_true", help="also write COCO instances")
    parser.add_argument("--semantic", action="store_true", help="also write semantic PNGs")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace images whose name is already in the dataset")
    parser.add_argument("--png-dir", type=Path, help="where the panoptic PNGs are, if not found")
    parser.add_argument("--image-dir", type=Path, help="where the images are, if not found")
    parser.add_argument("--image", type=Path, help="the image the --labels map belongs to")
    parser.add_argument("--vocab", help="vocabulary JSON file or preset name (e.g. coco)")
    parser.add_argument("--segments", type=Path, metavar="TABLE",
                        help="CSV/JSON of id -> category_id: --labels holds segment ids")
    parser.add_argument("--unlabeled", type=int,
                        help="value of unlabeled pixels in a category map (default 0)")
    parser.add_argument("--name", help="image name in the dataset (default: the image's stem)")
    parser.set_defaults(func=run, refused_status=1)


def run(args: argparse.Namespace) -> int:
    unchanged = 0
    try:
        if args.panoptic_json is not None:
            count, unchanged = _convert_panoptic(args)
        elif args.batch is not None:
            count, unchanged = _export_batch(args)
        else:
            count = _export_labels(args)
        summary = open_dataset(args.out).summary()
    except OSError as error:  # the file system refused (missing file, permissions, disk full)
        return refuse(error, status=1)
    already = f" ({unchanged} already there unchanged)" if unchanged else ""
    print(
        f"exported {count} image(s) to {args.out}{already}: the dataset now has "
        f"{summary['images']} images, {summary['segments']} segments "
        f"({summary['edited_share']:.0%} edited)"
    )
    return 0


def _convert_panoptic(args) -> tuple[int, int]:
    reader = PanopticReader(args.panoptic_json, png_dir=args.png_dir, image_dir=args.image_dir)
    images = reader.images()
    missing = [i["file_name"] for i in images if reader.image_path(i) is None]
    if missing:
        print(f"warning: {len(missing)} image file(s) not found (e.g. {missing[0]}); their "
              f"annotations are exported without images (use --image-dir)", file=sys.stderr)
    unchanged = 0
    for start in range(0, len(images), CHUNK):
        results = [reader.read(image) for image in images[start : start + CHUNK]]
        unchanged += _export_chunk(args, results)
        if len(images) > CHUNK:
            print(f"{min(start + CHUNK, len(images))}/{len(images)}", file=sys.stderr)
    return len(images), unchanged


def _export_batch(args) -> tuple[int, int]:
    from napari_odise.batch.read_outputs import read_output_folder

    vocabulary = _vocabulary(args.vocab) if args.vocab else None
    count, without_image, chunk, unchanged = 0, [], [], [0]

    def flush():
        if chunk:
            results, images, names = zip(*chunk)
            # a segment output folder holds the model's output: it is its own reference
            unchanged[0] += _export_chunk(args, list(results), list(images), list(names), list(results))
            chunk.clear()

    for name, result, image in read_output_folder(args.batch, vocabulary):
        if image is None:
            without_image.append(name)
        chunk.append((result, image, name))
        count += 1
        if len(chunk) >= CHUNK:
            flush()
    flush()
    if not count:
        raise DatasetError(f"{args.batch} has no segmented images yet (segments/ is empty)")
    if without_image:
        print(f"warning: {len(without_image)} image file(s) not found (e.g. {without_image[0]}); their "
              "annotations are exported without images", file=sys.stderr)
    return count, unchanged[0]


def _export_labels(args) -> int:
    if args.image is None or args.vocab is None:
        raise DatasetError("--labels needs --image (the image it annotates) and --vocab")
    vocabulary = _vocabulary(args.vocab)
    label_map = read_label_image(args.labels)
    if args.segments is not None:
        result = result_from_segment_map(label_map, vocabulary, read_segments_table(args.segments))
    else:
        if args.unlabeled is None and 0 in vocabulary.ids:
            raise DatasetError(
                f"category id 0 is in vocabulary {vocabulary.name!r}, so 0 cannot mean "
                f"unlabeled: pass --unlabeled VALUE (e.g. --unlabeled 255)"
            )
        result = result_from_category_map(label_map, vocabulary, args.unlabeled)
    export_result(result, args.out, image=args.image, image_name=args.name,
                  instances=args.instances, semantic=args.semantic, overwrite=args.overwrite)
    return 1


def _vocabulary(text: str) -> Vocabulary:
    if Path(text).is_file():
        return Vocabulary.load(text)
    try:
        return Vocabulary.preset(text)
    except VocabularyError:
        raise DatasetError(f"--vocab {text!r} is neither a file nor a preset name") from None
