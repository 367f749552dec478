"""Finding things around a COCO JSON file: which images to read, where PNGs and images lie.

Two layouts are recognised without being told: ours (``DATASET/annotations/*.json`` beside
``DATASET/images`` and ``DATASET/panoptic``) and COCO's own (``annotations/panoptic_val2017.json``
with PNGs in ``annotations/panoptic_val2017/`` and images in ``val2017/`` beside ``annotations``).
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_odise.io.errors import DatasetError
from napari_odise.io.paths import inside
from napari_odise.result import ImageSource


def select_images(images: list[dict], image_name: str | None, json_path: Path) -> list[dict]:
    """All image entries, or the one whose file name or stem is ``image_name``."""
    if image_name is None:
        return list(images)
    chosen = [
        image for image in images
        if image_name in (image["file_name"], Path(image["file_name"]).stem)
    ]
    if not chosen:
        shown = ", ".join(Path(i["file_name"]).stem for i in images[:10])
        raise DatasetError(
            f"{json_path}: no image named {image_name!r}; it has {len(images)} images"
            + (f", e.g. {shown}" if shown else "")
        )
    return chosen


def png_dirs(json_path: Path, given: str | os.PathLike | None = None) -> list[Path]:
    if given is not None:
        return [Path(given)]
    folder = json_path.parent
    return [folder.parent / "panoptic", folder / json_path.stem, folder.parent / json_path.stem,
            folder]


def image_dirs(json_path: Path, given: str | os.PathLike | None = None) -> list[Path]:
    if given is not None:
        return [Path(given)]
    folder = json_path.parent
    candidates = [folder.parent / "images"]
    split = json_path.stem.split("_", 1)
    if len(split) == 2 and split[0] in ("panoptic", "instances"):
        candidates.append(folder.parent / split[1])  # COCO: annotations/ beside val2017/
    candidates.append(folder)
    return candidates


def find_file(
    file_name: str, folders: list[Path], where: str = "COCO file_name"
) -> Path | None:
    """The first ``folder / file_name`` that is a file; a name leading outside a folder is
    refused (:class:`~napari_odise.io.paths.UnsafePathError`), never looked up."""
    for folder in folders:
        candidate = inside(folder, file_name, where)
        if candidate.is_file():
            return candidate
    return None


def resolved_or_none(path: Path | None) -> str | None:
    return str(path.resolve()) if path is not None else None


def vocabulary_name(data: dict, json_path: Path) -> str:
    """Our files name their vocabulary in the top-level ``info``; others get the file stem."""
    info = data.get("info")
    if isinstance(info, dict) and isinstance(info.get("vocabulary"), str):
        return info["vocabulary"]
    return json_path.stem


def image_info(image: dict, json_path: Path, kind: str) -> dict:
    """The ``info`` keys every reader fills for one image entry: where it came from in the file."""
    return {
        "format": kind,
        "annotations": str(json_path.resolve()),
        "image_id": int(image["id"]),
        "file_name": image["file_name"],
    }


def image_source(image: dict, folders: list[Path]) -> ImageSource:
    """An image entry's name (its file stem) and file (None when not found in ``folders``)."""
    file_name = image["file_name"]
    found = find_file(file_name, folders, "COCO images file_name")
    return ImageSource(Path(file_name).stem, resolved_or_none(found))
