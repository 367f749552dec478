"""``manifest.json``: the dataset's table of contents and its commit record.

It is written after every other file of an export, so an image listed here has all its files in
place; entries the annotation JSONs hold for images *not* listed here are leftovers of an
interrupted export, ignored by readers of the dataset and dropped by the next export. Removing
an image (to replace it) rewrites the manifest first, for the same reason.

Per image it keeps provenance (source image path, model name, export time), how many segments
a person edited, and, when the model's own output for the image was known at export, how far the
annotations are from it (``quality``: PQ/SQ/RQ and the counts per category that
``napari-odise dataset stats`` sums; see :mod:`napari_odise.quality`), so a dataset can report
how much of it was corrected by hand.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from napari_odise import __version__
from napari_odise.io.errors import DatasetError
from napari_odise.io.layout import FORMAT, FORMAT_VERSION
from napari_odise.io.paths import inside
from napari_odise.io.stable_json import read_json

# Per-image keys, for reference (all written for every image):
#   name, image_id, file_name (COCO, relative to images/), image (dataset-relative path or None
#   when no image file was given), panoptic, semantic (path or None), instances (bool),
#   height, width, segments, edited, skipped_unassigned, source_image, model, exported,
#   quality (Quality.to_json(), or None when the model's output was not known; datasets written
#   before it have no such key: read it with .get)
RECORD_KEYS = (
    "name", "image_id", "file_name", "image", "panoptic", "semantic", "instances", "height",
    "width", "segments", "edited", "skipped_unassigned", "source_image", "model", "exported",
    "quality",
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(path: Path) -> dict:
    try:
        data = read_json(path)
    except ValueError as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a napari-odise dataset manifest")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DatasetError(
            f"{path}: dataset format version {version!r} is newer than this napari-odise "
            f"({__version__}) understands ({FORMAT_VERSION}): update napari-odise"
        )
    if not isinstance(data.get("images"), list):
        raise DatasetError(f"{path}: manifest has no 'images' list")
    return data


def record_path(root: Path, record: dict, key: str) -> Path | None:
    """A record's ``image``/``panoptic``/``semantic`` as a path inside the dataset (None when
    the record has none); a path leading out of the dataset is refused, never used."""
    value = record.get(key)
    if value is None:
        return None
    return inside(root, value, f"{root / 'manifest.json'}: image {record.get('name')!r} {key}")


def check_record_paths(root: Path, record: dict) -> None:
    """Refuse a record whose files lie outside the dataset (see :mod:`~napari_odise.io.paths`)."""
    for key in ("image", "panoptic", "semantic"):
        record_path(root, record, key)
    if record.get("file_name") is not None:
        inside(root / "images", record["file_name"],
               f"{root / 'manifest.json'}: image {record.get('name')!r} file_name")


def build_manifest(
    records: list[dict], created: str | None, categories: int, instances: int
) -> dict:
    """The manifest for these image records (sorted by image id)."""
    records = sorted(records, key=lambda r: r["image_id"])
    segments = sum(r["segments"] for r in records)
    edited = sum(r["edited"] for r in records)
    stamp = now()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool": {"name": "napari-odise", "version": __version__},
        "created": created or stamp,
        "updated": stamp,
        "counts": {
            "images": len(records),
            "segments": segments,
            "edited_segments": edited,
            "model_segments": segments - edited,
            "edited_share": edited / segments if segments else 0.0,
            "instances": instances,
            "categories": categories,
        },
        "files": {
            "vocabulary": "vocabulary.json",
            "panoptic": "annotations/panoptic.json",
            "instances": "annotations/instances.json",
            "semantic_legend": "annotations/semantic_legend.json",
        },
        "images": records,
    }


def provenance_by_name(json_path: Path) -> dict[str, dict]:
    """For a JSON inside a napari-odise dataset (``DATASET/annotations/x.json``): per image
    name, its ``source_image`` and ``model``. Empty for JSON files anywhere else."""
    manifest = json_path.parent.parent / "manifest.json"
    if not manifest.is_file():
        return {}
    try:
        records = read_manifest(manifest)["images"]
        return {
            r["name"]: {"source_image": r.get("source_image"), "model": r.get("model")}
            for r in records
        }
    except (DatasetError, KeyError, TypeError):
        return {}
