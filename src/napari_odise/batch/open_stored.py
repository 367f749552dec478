"""One image of a batch output folder, opened for correcting: its pixels as the model saw them
and its current labels with the model's cached tensors, so proposals at a click and vocabulary
changes work without running the backbone again (the Batch widget's "Open in napari...").

The store keeps tensors and labels, not pixels: the picture is read again from the file the run
read, found through the per-image segments JSON (which records the source path), else as the key
under the images folder given (keys are paths relative to the run's input folder).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_odise.batch.files import ImageFiles
from napari_odise.batch.job import STORE_NAME
from napari_odise.batch.reading import Item, read_item
from napari_odise.batch.store import BatchStore, StoreError
from napari_odise.errors import MissingFileError
from napari_odise.image_input import to_rgb_uint8
from napari_odise.io.stable_json import read_json
from napari_odise.models import ModelSpec
from napari_odise.result import ImageSource, PanopticResult


@dataclass(frozen=True)
class StoredImage:
    key: str
    pixels: np.ndarray  # (H, W, 3) uint8: the picture the model segmented
    result: PanopticResult  # the current labels, with the model's tensors (``encoded``)
    path: Path  # the image file read


def stored_keys(out: str | Path) -> list[str]:
    """The images of ``out``'s store that can be opened: tensors kept and labelled, sorted."""
    store = _store(Path(out))
    if store.header.get("embeddings") == "none":
        return []
    return [key for key in store.keys() if store.has_labels(key)]


def stored_model(out: str | Path, device: str = "auto") -> ModelSpec:
    """The model that made the store's tensors (its header names it), on ``device``: the one
    that can classify them again (the store does not record where it ran)."""
    header = _store(Path(out)).header
    return ModelSpec(header["model"], device, header.get("precision", "fp32"))


def open_stored_image(out: str | Path, key: str, images: str | Path | None = None) -> StoredImage:
    """Image ``key`` of the batch output folder ``out`` (reads files: call it off a GUI thread).
    ``images``: the folder the run read, used when the per-image files do not say where the
    image is (a store-only run)."""
    out = Path(out)
    store = _store(out)
    attrs = store.image_attrs(key)
    result = store.load_result(key, with_encoded=True)
    path, page = _source(out, key, attrs, images)
    pixels = to_rgb_uint8(read_item(Item(key, path, page, attrs.get("file_key", key))))
    if pixels.shape[:2] != result.label_map.shape:
        raise StoreError(
            f"{path} is {pixels.shape[1]} x {pixels.shape[0]} pixels but its labels in {out} are "
            f"{result.label_map.shape[1]} x {result.label_map.shape[0]}: the file changed since the run"
        )
    result = dataclasses.replace(result, source=ImageSource(key, str(path)))
    return StoredImage(key, pixels, result, path)


def _store(out: Path) -> BatchStore:
    if not (out / STORE_NAME).is_dir():
        raise MissingFileError(f"{out} has no {STORE_NAME}: run the batch with the zarr store to open its images here")
    return BatchStore.open(out / STORE_NAME)


def _source(out: Path, key: str, attrs: dict, images: str | Path | None) -> tuple[Path, int]:
    """The image file (and TIFF page) the run read for ``key``."""
    page = int(attrs.get("page", 0))
    from napari_odise.batch.runner import file_naming

    written = ImageFiles(out, file_naming(out)).locate(key)
    if written is not None:
        source = read_json(written["segments"]).get("source") or {}
        if source.get("path") and Path(source["path"]).is_file():
            return Path(source["path"]), int(source.get("page", page))
    if images is not None:
        candidate = Path(images) / attrs.get("file_key", key)
        if candidate.is_file():
            return candidate, page
    raise MissingFileError(
        f"the image file of {key!r} was not found"
        + (f" under {images}" if images is not None else "")
        + ": give the folder of images the batch read"
    )
