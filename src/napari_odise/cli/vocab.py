"""``napari-odise vocab warm``: embed vocabularies ahead of use, so their first use is instant.

    napari-odise vocab warm coco ade20k lvis
    napari-odise vocab warm my_categories.txt --model official --device cuda

The text embeddings go to the on-disk store of the model's CLIP weights (under the weights cache;
``napari-odise weights clear-cache`` removes them), where every later process finds them.
"""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    from napari_odise.models import DEVICES

    parser = subparsers.add_parser("vocab", help="vocabulary tools: warm the text-embedding store", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="vocab_command", metavar="ACTION", required=True)
    warm = commands.add_parser(
        "warm",
        help="embed vocabulary presets or files ahead of use",
        description="Embed vocabulary presets or files with the model's CLIP text tower and keep them on disk.",
    )
    warm.add_argument("vocabularies", nargs="+", metavar="PRESET|FILE", help="preset names (coco, ade20k, lvis, ...) or vocabulary files")
    warm.add_argument("--model", default="official", help="whose CLIP weights: official, official-caption, tiny, or a checkpoint path (default: official)")
    warm.add_argument("--device", default="auto", help=f"{', '.join(DEVICES)}, cuda:1, ... (default: auto)")
    warm.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    warm.set_defaults(func=run_warm)


def run_warm(args) -> int:
    from napari_odise.batch.vocabularies import load_vocabulary
    from napari_odise.models import ModelSpec

    vocabularies = [load_vocabulary(name) for name in args.vocabularies]  # refused before torch loads
    spec = ModelSpec(args.model, args.device)
    print(f"loading model {spec.name} ...", file=sys.stderr)
    from tqdm import tqdm

    from napari_odise.pool import default_pool

    predictor = default_pool().get(spec)
    if predictor.model.text_cache.store is None:
        print(
            f"note: {spec.name} has no on-disk text-embedding store (only models loaded from weight files have "
            "one: the tiny models' weights are random), so nothing is kept after this process",
            file=sys.stderr,
        )
    for name, vocabulary in zip(args.vocabularies, vocabularies):
        with tqdm(desc=name, unit="category", disable=args.quiet, file=sys.stderr) as bar:

            def progress(stage, done, total, bar=bar):
                bar.total = total
                bar.n = done
                bar.refresh()

            encoded = predictor.warm(vocabulary, progress)
        print(f"{name}: {len(vocabulary)} categories, {encoded} new strings embedded")
    return 0
