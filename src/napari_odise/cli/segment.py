"""``napari-odise segment``: images or folders -> per-image PNG/JSON/overlay, zarr store, COCO.

    napari-odise segment photos/ --out results/ --vocab coco
    napari-odise segment photos/ --out results/ --recursive --coco --no-files
    napari-odise segment photos/ --out shard-3/ --shard 3/8          # SLURM array task 3 of 8
    napari-odise segment photos/ --out results/ --scheduler local    # one Dask worker per GPU
    napari-odise segment --sample astronaut --out results/ --model tiny  # a bundled photograph

Running the same command again resumes: finished images are skipped, half-written ones redone.
Exit codes: 0 done (some images may have failed: see the summary); 1 every image failed;
2 bad usage or nothing could start (no images, model not loadable, output folder made
differently), or the output folder cannot be written (disk full, read-only: what was done is
kept, run again to resume); 130 interrupted (Ctrl-C; run again to resume).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_odise.cli.progress_bar import progress_bar
from napari_odise.errors import InvalidInputError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment images or folders of images (resumable batch)",
        description="Segment images or folders of images into per-image PNG/JSON/overlay files, a zarr "
        "store and/or a COCO dataset. Running it again resumes. See docs/batch.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", metavar="IMAGE_OR_FOLDER")
    parser.add_argument(
        "--sample", action="append", default=[], metavar="NAME",
        help="also segment a sample photograph shipped with scikit-image (astronaut, coffee, chelsea, rocket); "
        "it is saved as DIR/samples/NAME.png",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (resumes if it exists)")
    add_model_arguments(parser)
    parser.add_argument(
        "--vocab", metavar="PRESET|FILE",
        help="vocabulary preset name, or a .json/.txt file (default: a fine-tuned model's own vocabulary.json "
        "next to its model.pth, else coco)",
    )
    found = parser.add_argument_group("which images")
    found.add_argument("--recursive", "-r", action="store_true", help="also look in sub-folders")
    found.add_argument("--glob", metavar="PATTERN", help='only file names matching, e.g. "*.tif" (with a "/": matched on the relative path)')
    found.add_argument("--pages", choices=("all", "first"), default="all", help="multi-page TIFFs: every page as an image (default) or the first only")
    found.add_argument("--shard", metavar="I/N", help="only shard I of N (0-based), for array jobs; merge the outputs with `napari-odise merge`")
    found.add_argument("--shard-by", choices=("hash", "index"), default="hash", help="hash of the file's key (stable when files are added; default) or position in the sorted list")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--store", action=argparse.BooleanOptionalAction, default=True, help="zarr store with labels and cached tensors for re-labelling (default: on)")
    outputs.add_argument("--coco", action="store_true", help="also build a COCO dataset in DIR/coco")
    outputs.add_argument("--files", action=argparse.BooleanOptionalAction, default=None, help="per-image panoptic PNG, segments JSON and overlay PNG (default: on unless --coco)")
    outputs.add_argument("--embeddings", choices=("float32", "float16", "none"), default="float32", help="how the store keeps the tensors (float16: half the size; none: no re-labelling)")
    cluster = parser.add_argument_group("Dask")
    cluster.add_argument("--scheduler", metavar="ADDRESS|local", help="run on a Dask cluster: a scheduler address, or 'local' for a local cluster")
    cluster.add_argument("--workers", type=int, metavar="N", help="worker processes of the local cluster (default: one per GPU)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from napari_odise.models import DEVICES, PRECISIONS, SETTINGS_NAMES

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", default="official",
        help="official, official-caption, tiny (random weights, for trials), or the path of an ODISE checkpoint "
        "in the official layout (the released .pth, a re-saved copy, or a fine-tuned model.pth) (default: official)",
    )
    model.add_argument("--device", default="auto", help=f"{', '.join(DEVICES)}, cuda:1, ... (default: auto)")
    model.add_argument("--precision", choices=PRECISIONS, default="fp32", help="(default: fp32)")
    model.add_argument("--settings", choices=SETTINGS_NAMES, default="evaluation", help="named inference settings (default: evaluation)")
    model.add_argument("--short-edge", type=int, metavar="PX", help="test-time resize: shortest edge (default 1024)")
    model.add_argument("--max-size", type=int, metavar="PX", help="test-time resize: longest edge at most (default 2560)")
    model.add_argument("--crop-size", type=int, metavar="PX", help="backbone crop size (default 512)")


def run(args) -> int:
    inputs, vocabulary, spec, overrides = check_arguments(args)  # a refusal: the CLI's one handler
    # Only now the heavy part (PyTorch, the model): a typo is reported in a second, not after it.
    from napari_odise.batch import run_batch

    options = _options(args)
    with progress_bar(args.quiet) as progress:
        inputs += [str(write_sample(name, args.out)) for name in args.sample]
        settings = spec.settings(args.settings, **overrides)
        summary = run_batch(inputs, args.out, vocabulary, spec, options, progress=progress, settings=settings)
    print(summary.text())
    for line in what_was_written(summary, args, options):
        print(line)
    return summary.exit_code


def check_arguments(args):
    """Everything the command line says, checked without PyTorch: (inputs, vocabulary, model
    spec, resolution overrides); raises a UserError that says what to fix."""
    from napari_odise._sample_data import SAMPLES
    from napari_odise.batch.discovery import DiscoveryError, parse_shard
    from napari_odise.batch.vocabularies import load_vocabulary
    from napari_odise.model.settings import InferenceSettings
    from napari_odise.models import ModelSpec

    unknown = [name for name in args.sample if name not in SAMPLES]
    if unknown:
        raise InvalidInputError(f"unknown sample {unknown[0]!r}; choose one of {', '.join(SAMPLES)}")
    inputs = list(args.inputs)
    if not inputs and not args.sample:
        raise InvalidInputError("give at least one image or folder, or --sample NAME")
    missing = [path for path in inputs if not Path(path).exists()]
    if missing:
        raise DiscoveryError(f"not found: {', '.join(missing)}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise InvalidInputError(f"--out {args.out} is a file: give a folder (it is created if missing)")
    if args.shard is not None:
        parse_shard(args.shard)
    spec = ModelSpec(args.model, args.device, args.precision)
    vocabulary = load_vocabulary(args.vocab or default_vocabulary(spec))
    overrides = {
        name: getattr(args, name)
        for name in ("short_edge", "max_size", "crop_size")
        if getattr(args, name, None) is not None
    }
    InferenceSettings().replace(**overrides)  # checks the values
    writes_files = args.files if args.files is not None else not args.coco
    if not (args.store or writes_files or args.coco):
        raise InvalidInputError("nothing to write: enable the store, the per-image files or the COCO dataset")
    return inputs, vocabulary, spec, overrides


def default_vocabulary(spec) -> str:
    """The vocabulary a model was trained on when it says so (``finetune`` writes vocabulary.json
    beside model.pth), else COCO's, which the official models were trained on."""
    if spec.is_path:
        own = Path(spec.name).parent / "vocabulary.json"
        if own.is_file():
            return str(own)
    return "coco"


def _options(args):
    from napari_odise.batch import BatchOptions

    return BatchOptions(
        recursive=args.recursive,
        pattern=args.glob,
        pages=args.pages,
        store=args.store,
        files=args.files,
        coco=args.coco,
        embeddings=args.embeddings,
        shard=args.shard,
        shard_by=args.shard_by,
        scheduler=args.scheduler,
        workers=args.workers,
    )


def what_was_written(summary, args, options) -> list[str]:
    """Where to look, and what the result means: notes for an empty result and the tiny model."""
    out = Path(args.out)
    lines = []
    if options.writes_files and (summary.done or summary.skipped):
        lines.append(f"look at: {out / 'overlay'}/ (the segments over each image); {out / 'segments'}/ "
                     f"(categories, scores, boxes as JSON); {out / 'panoptic'}/ (COCO panoptic PNGs)")
    lines.append(f"summary: {out / 'batch_summary.json'}")
    if summary.empty and args.settings == "evaluation":
        lines.append(
            "note: with --settings evaluation (the paper's) a segment is dropped when less than 80% of its "
            "mask survives the overlap with stronger ones; --settings demo keeps them, as the official demo does"
        )
    if args.model == "tiny":
        lines.append(
            "note: the tiny model has random weights: it shows the tools at work, its segments and labels mean "
            "nothing; with the official weights installed (napari-odise weights status) drop --model tiny"
        )
    return lines


def write_sample(name: str, out: Path) -> Path:
    """Save a bundled sample photograph as DIR/samples/NAME.png (once) and return its path."""
    from PIL import Image

    from napari_odise._sample_data import load_sample_image
    from napari_odise.atomic import atomic_writer

    path = Path(out) / "samples" / f"{name}.png"
    if not path.exists():
        image = load_sample_image(name)
        with atomic_writer(path) as stream:
            Image.fromarray(image).save(stream, format="PNG")
    return path
