"""A ``segment`` output folder read back as results: its segments JSON and panoptic PNG per image,
so ``napari-odise export --batch DIR`` can turn a batch run into a dataset for correcting and
fine-tuning without running the model again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from napari_odise.errors import MissingFileError
from napari_odise.io.panoptic_png import read_panoptic_png
from napari_odise.io.stable_json import read_json
from napari_odise.result import ImageSource, PanopticResult
from napari_odise.vocabulary import Vocabulary


def folder_vocabulary(out: Path) -> Vocabulary | None:
    """The vocabulary the folder's labels use (from its store), or None without a store."""
    from napari_odise.batch.job import STORE_NAME
    from napari_odise.batch.store import BatchStore

    store = out / STORE_NAME
    return BatchStore.open(store).vocabulary if store.is_dir() else None


def read_output_folder(out: str | Path, vocabulary: Vocabulary | None = None) -> Iterator[tuple[str, PanopticResult, Path | None]]:
    """(dataset name, result, image file or None) for every image with per-image files, in key order."""
    out = Path(out)
    segments = out / "segments"
    if not segments.is_dir():
        raise MissingFileError(f"{out} has no segments/ folder: give a folder written by `napari-odise segment` (with its per-image files)")
    vocabulary = vocabulary or folder_vocabulary(out)
    if vocabulary is None:
        raise MissingFileError(f"{out} has no store.zarr to read its vocabulary from: pass --vocab")
    for path in sorted(segments.rglob("*.json")):
        annotation = read_json(path)
        relative = path.relative_to(segments).parent
        label_map = read_panoptic_png(out / "panoptic" / relative / annotation["file_name"])
        rows = [{**row, "score": row.get("score", np.nan)} for row in annotation["segments_info"]]
        source = annotation.get("source") or {}
        image = Path(source["path"]) if source.get("path") and not source.get("page") else None
        image = image if image is not None and image.is_file() else None
        name = (relative / Path(annotation["file_name"]).stem).as_posix().replace("/", "__")
        result = PanopticResult.from_segments_info(
            label_map, rows, vocabulary, model=annotation.get("model"),
            source=ImageSource(annotation["image"], str(image) if image else None),
        )
        yield name, result, image
