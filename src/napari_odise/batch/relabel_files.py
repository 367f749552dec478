"""After a store is re-labelled, the rest of its output folder follows: per-image files and batch.json.

A folder must say one thing: the segments JSON, panoptic PNG and overlay of every image and the
folder's manifest (which a later ``segment`` run compares before resuming) all name the store's
current labels. Each image's JSON records its labelset id, so a killed re-labelling resumes with
the images still behind; batch.json changes last, once every file is current.
"""

from __future__ import annotations

from pathlib import Path

from napari_odise.batch.files import ImageFiles
from napari_odise.batch.manifest import MANIFEST_NAME
from napari_odise.batch.reading import ImageReadError, Item, read_item
from napari_odise.batch.store import BatchStore
from napari_odise.image_input import to_rgb_uint8
from napari_odise.io.stable_json import read_json, write_json


def follow_store(out: Path, store: BatchStore) -> list[str]:
    """Bring ``out``'s per-image files and manifest to the store's labels; returns the keys whose
    overlay could not be redrawn (their image file is gone or unknown: the overlay is removed)."""
    files = ImageFiles(out)
    vocabulary, settings = store.labelset()
    without_overlay = []
    for key in store.keys():
        paths = files.locate(key)
        annotation = read_json(paths["segments"]) if paths is not None else None
        if annotation is None or annotation.get("labels") == store.labels:
            continue  # never written (--no-files), or already current
        result = store.load_result(key)
        source = _source(key, annotation)
        rgb = _pixels(source, result.label_map.shape) if source is not None else None
        if rgb is None:
            without_overlay.append(key)
        files.write(key, rgb, result, store.header["model"], source=source, labels=store.labels, at=paths)
    manifest_path = out / MANIFEST_NAME
    if manifest_path.is_file():
        manifest = read_json(manifest_path)
        changes = {"labels": store.labels, "vocabulary": vocabulary.name, "classify_settings": settings.classify_part()}
        if any(manifest.get(name) != value for name, value in changes.items()):
            write_json(manifest_path, {**manifest, **changes}, indent=1)
    return without_overlay


def _source(key: str, annotation: dict) -> Item | None:
    """The image file the JSON names (folders written before sources were recorded name none)."""
    source = annotation.get("source")
    if not isinstance(source, dict) or "path" not in source:
        return None
    return Item(key, Path(source["path"]), int(source.get("page", 0)), key)


def _pixels(item: Item, shape: tuple[int, int]):
    """The image as the model saw it, or None if it can no longer be read as that image."""
    if not item.path.is_file():
        return None
    try:
        rgb = to_rgb_uint8(read_item(item))
    except ImageReadError:
        return None
    return rgb if rgb.shape[:2] == tuple(shape) else None
