"""COCO panoptic annotations of :class:`PanopticResult` objects, and reading them back.

One annotation per image: ``{"image_id", "file_name" (the PNG), "segments_info"}``, each segment
``{"id", "category_id", "area", "bbox", "iscrowd"}`` as the COCO panoptic format defines them, plus
extra keys that COCO readers ignore and our reader restores:

* ``"source"``: ``"model"`` or ``"edited"`` (a person changed the segment);
* ``"score"``: the model's confidence, left out when the segment has none (NaN);
* ``"reviewed"``: ``true`` when a person checked the segment (edited ones included), left out
  otherwise; a file without it reads as not reviewed (an edited segment still counts as reviewed);
* ``"track_id"``: in a plane of a linked stack, the object's id through the stack (the same in
  every plane it is in), from ``info["track_ids"]``; read back into ``info["track_ids"]``.

``iscrowd`` is 0 unless the result came from a file that marked the segment a crowd region
(``info["iscrowd"]``, a list of segment ids). Unassigned segments (category -1) have no COCO
category: exporting them is refused unless they are skipped, in which case their pixels become
void (0) in the PNG so that every PNG id has its ``segments_info`` entry.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection
from pathlib import Path

import numpy as np

from napari_odise.io.boxes import bounding_boxes
from napari_odise.io.categories import vocabulary_from_coco
from napari_odise.io.coco_files import (
    find_file,
    image_dirs,
    image_info,
    image_source,
    png_dirs,
    select_images,
    vocabulary_name,
)
from napari_odise.io.errors import DatasetError
from napari_odise.io.manifest import provenance_by_name
from napari_odise.io.panoptic_png import read_panoptic_png
from napari_odise.io.stable_json import read_json
from napari_odise.pixel_budget import check_pixels
from napari_odise.result import SOURCES, UNASSIGNED, ImageSource, PanopticResult, segments_table
from napari_odise.vocabulary import Vocabulary


def unassigned_ids(result: PanopticResult) -> list[int]:
    segments = result.segments
    return segments.loc[segments["category_id"] == UNASSIGNED, "id"].astype(int).tolist()


def exported_label_map(result: PanopticResult, skipped: Collection[int]) -> np.ndarray:
    """The label map as exported: skipped segments' pixels set to 0 (void)."""
    if not skipped:
        return result.label_map
    return np.where(np.isin(result.label_map, list(skipped)), 0, result.label_map).astype(
        np.int32
    )


def segments_info(result: PanopticResult, skipped: Collection[int] = ()) -> list[dict]:
    """COCO ``segments_info`` of a result, in id order (``skipped`` ids left out)."""
    segments = result.segments[~result.segments["id"].isin(list(skipped))]
    crowd = {int(i) for i in result.info.get("iscrowd", ())}
    tracks = result.info.get("track_ids") or {}
    boxes = bounding_boxes(result.label_map, segments["id"])
    entries = []
    for row in segments.itertuples(index=False):
        entry = {
            "id": int(row.id),
            "category_id": int(row.category_id),
            "area": int(row.area),
            "bbox": boxes[int(row.id)],
            "iscrowd": int(int(row.id) in crowd),
            "source": str(row.source),
        }
        if not math.isnan(row.score):
            entry["score"] = float(row.score)
        if row.reviewed or row.source == "edited":
            entry["reviewed"] = True
        if int(row.id) in tracks:
            entry["track_id"] = int(tracks[int(row.id)])
        entries.append(entry)
    return entries


def panoptic_annotation(
    result: PanopticResult, image_id: int, png_file_name: str, skipped: Collection[int] = ()
) -> dict:
    return {
        "image_id": int(image_id),
        "file_name": png_file_name,
        "segments_info": segments_info(result, skipped),
    }


# --- reading ---------------------------------------------------------------------------------
def read_panoptic(
    json_path: str | os.PathLike,
    image_name: str | None = None,
    *,
    png_dir: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
) -> list[PanopticResult]:
    """The images of a COCO panoptic JSON as results, in the file's ``images`` order.

    Each result's vocabulary is built from ``categories`` (our extra ``synonyms`` key restored),
    ``source``, ``score`` and ``reviewed`` come back when present (else ``"model"``, NaN and not
    reviewed). ``result.source``
    is the image: its name (file stem) and file (``path`` None when the image is not found);
    ``result.model`` the model a napari-odise dataset records. ``info`` holds what the file
    brings besides: ``image_id``, ``file_name``, ``panoptic_png``, ``annotations``,
    ``supercategories``; ``iscrowd`` when the file marks crowd segments; ``track_ids`` when it
    records a linked stack's tracks; ``provenance`` when it lies in a napari-odise dataset.

    PNGs are looked up in ``png_dir``, else ``../panoptic/`` (our layout), ``<json stem>/`` beside
    the JSON (COCO's layout), or the JSON's folder; images in ``image_dir``, else ``../images/``,
    COCO's ``../<split>/`` for ``panoptic_<split>.json``, or the JSON's folder.
    ``image_name`` picks one image by name (file stem) or file name.
    """
    reader = PanopticReader(json_path, png_dir=png_dir, image_dir=image_dir)
    return [reader.read(image) for image in reader.images(image_name)]


class PanopticReader:
    """One loaded COCO panoptic JSON, reading its images one at a time (for large files)."""

    def __init__(
        self,
        json_path: str | os.PathLike,
        *,
        png_dir: str | os.PathLike | None = None,
        image_dir: str | os.PathLike | None = None,
        data: dict | None = None,
    ):
        self.json_path = Path(json_path)
        self.data = read_json(self.json_path) if data is None else data
        if not is_panoptic_json(self.data):
            raise DatasetError(
                f"{self.json_path} is not a COCO panoptic file: it needs 'images', 'categories' "
                f"and 'annotations' with 'segments_info'"
            )
        self.vocabulary, self.supercategories = vocabulary_from_coco(
            self.data["categories"], name=vocabulary_name(self.data, self.json_path)
        )
        self._annotations = annotations_by_image(self.data, self.json_path)
        self._images_by_id: dict[int, dict] | None = None
        self._png_dirs = png_dirs(self.json_path, png_dir)
        self._image_dirs = image_dirs(self.json_path, image_dir)
        self._provenance = provenance_by_name(self.json_path)

    def images(self, image_name: str | None = None) -> list[dict]:
        return select_images(self.data["images"], image_name, self.json_path)

    def image_by_id(self, image_id: int) -> dict:
        if self._images_by_id is None:
            self._images_by_id = {int(i["id"]): i for i in self.data["images"]}
        try:
            return self._images_by_id[int(image_id)]
        except KeyError:
            raise DatasetError(f"{self.json_path}: no image with id {image_id}") from None

    def image_path(self, image: dict) -> Path | None:
        """The image file of an ``images`` entry, where found."""
        where = f"{self.json_path}: images file_name"
        return find_file(image["file_name"], self._image_dirs, where)

    def read(self, image: dict) -> PanopticResult:
        annotation = self._annotations.get(int(image["id"]))
        if annotation is None:
            raise DatasetError(f"{self.json_path}: image {image['file_name']!r} has no annotation")
        png = find_file(
            annotation["file_name"], self._png_dirs, f"{self.json_path}: annotations file_name"
        )
        if png is None:
            raise DatasetError(
                f"{self.json_path}: panoptic PNG {annotation['file_name']!r} not found in "
                + ", ".join(str(d) for d in self._png_dirs)
                + " (pass png_dir)"
            )
        if "height" in image or "width" in image:
            check_pixels(image.get("height"), image.get("width"),
                         f"{self.json_path}: image {image['file_name']!r}")
        info = image_info(image, self.json_path, "coco_panoptic")
        info["panoptic_png"] = str(png.resolve())
        info["supercategories"] = dict(self.supercategories)
        source = image_source(image, self._image_dirs)
        record = self._provenance.get(source.name)
        model = None
        if record is not None:
            info["provenance"] = dict(record)
            model = None if record.get("model") is None else str(record["model"])
        return result_from_segments_info(
            read_panoptic_png(png), annotation["segments_info"], self.vocabulary, info, image,
            source=source, model=model,
        )


def annotations_by_image(data: dict, json_path: Path) -> dict[int, dict]:
    """Each image's one annotation, by image id. Two annotations for one image (or two images
    with one id) are refused: which PNG belongs to which image would be a guess."""
    images: dict[int, str] = {}
    for position, image in enumerate(data["images"]):
        image_id = _whole_number(image.get("id") if isinstance(image, dict) else None)
        if image_id is None or not isinstance(image.get("file_name"), str):
            raise DatasetError(f"{json_path}: images[{position}] needs a whole-number 'id' and a "
                               f"'file_name'")
        if image_id in images:
            raise DatasetError(f"{json_path}: images {images[image_id]!r} and "
                               f"{image['file_name']!r} both have id {image_id}")
        images[image_id] = image["file_name"]
    annotations: dict[int, dict] = {}
    for position, annotation in enumerate(data["annotations"]):
        image_id = _whole_number(annotation.get("image_id"))
        if image_id is None or not isinstance(annotation.get("file_name"), str):
            raise DatasetError(f"{json_path}: annotations[{position}] needs a whole-number "
                               f"'image_id' and a 'file_name'")
        if not isinstance(annotation.get("segments_info"), list):
            raise DatasetError(f"{json_path}: annotations[{position}] ('segments_info' of image "
                               f"id {image_id}) must be a list of segments")
        if image_id in annotations:
            raise DatasetError(
                f"{json_path}: image id {image_id} has two annotations "
                f"({annotations[image_id]['file_name']!r} and {annotation['file_name']!r}); COCO "
                f"panoptic has one per image: remove one"
            )
        annotations[image_id] = annotation
    return annotations


def _whole_number(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _checked_entry(entry, where: str) -> tuple[int, int]:
    """(segment id, category id) of one ``segments_info`` entry, refused unless both are there."""
    if not isinstance(entry, dict):
        raise DatasetError(f"{where}: segments_info holds {entry!r}, not a segment object")
    segment_id = _whole_number(entry.get("id"))
    category_id = _whole_number(entry.get("category_id"))
    if segment_id is None:
        raise DatasetError(f"{where}: a segment has no whole-number 'id' ({entry!r})")
    if category_id is None:
        raise DatasetError(f"{where}: segment {segment_id} has no whole-number 'category_id'")
    return segment_id, category_id


def result_from_segments_info(
    label_map: np.ndarray,
    entries: list[dict],
    vocabulary: Vocabulary,
    info: dict,
    image: dict | None = None,
    *,
    source: ImageSource = ImageSource(),
    model: str | None = None,
) -> PanopticResult:
    """A result from a PNG's ids and its ``segments_info`` (areas recounted from the map)."""
    where = info.get("panoptic_png", "panoptic PNG")
    if image is not None and "height" in image and "width" in image:
        if label_map.shape != (int(image["height"]), int(image["width"])):
            raise DatasetError(
                f"{where}: PNG is {label_map.shape[1]}x{label_map.shape[0]} but the image entry "
                f"says {image['width']}x{image['height']}"
            )
    if not isinstance(entries, list):
        raise DatasetError(f"{where}: segments_info must be a list of segments")
    checked = [_checked_entry(entry, where) for entry in entries]
    if label_map.size and int(label_map.min()) < 0:
        raise DatasetError(f"{where}: the PNG holds negative segment ids")
    areas = np.bincount(label_map.ravel(), minlength=1)
    described = {segment_id for segment_id, _ in checked}
    present = set(np.flatnonzero(areas).tolist()) - {0}
    undescribed = sorted(present - described)
    if undescribed:
        raise DatasetError(
            f"{where}: segment ids {undescribed[:10]} are in the PNG but not in segments_info"
        )
    rows = []
    empty = []
    crowd = []
    tracks = {}
    for entry, (segment_id, category_id) in zip(entries, checked):
        if segment_id not in present:
            empty.append(segment_id)
            continue
        try:
            category = vocabulary.by_id(category_id)
        except KeyError:
            raise DatasetError(
                f"{where}: segment {segment_id} has category_id {category_id}, which is not in "
                f"categories"
            ) from None
        made_by = entry.get("source", "model")
        if made_by not in SOURCES:
            raise DatasetError(
                f"{where}: segment {segment_id} has source {made_by!r}; expected one of {SOURCES}"
            )
        score = entry.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
            raise DatasetError(f"{where}: segment {segment_id} has score {score!r}, not a number")
        reviewed = entry.get("reviewed", False)
        if not isinstance(reviewed, bool):
            raise DatasetError(f"{where}: segment {segment_id} has reviewed {reviewed!r}, not true/false")
        rows.append(
            (
                segment_id, category.id, category.name, category.isthing,
                np.nan if score is None else float(score), int(areas[segment_id]), made_by, reviewed,
            )
        )
        if entry.get("iscrowd", 0):
            crowd.append(segment_id)
        track = entry.get("track_id")
        if track is not None:
            if isinstance(track, bool) or not isinstance(track, int) or track < 1:
                raise DatasetError(f"{where}: segment {segment_id} has track_id {track!r}, not an id >= 1")
            tracks[segment_id] = track
    info = dict(info)
    if crowd:
        info["iscrowd"] = sorted(crowd)
    if tracks:
        info["track_ids"] = tracks
    if empty:
        info["empty_segments"] = sorted(empty)
    table = segments_table(*zip(*rows)) if rows else segments_table()
    result = PanopticResult(label_map, table, vocabulary, info=info, source=source, model=model)
    try:
        result.validate()
    except ValueError as error:
        raise DatasetError(f"{where}: {error}") from None
    return result


def is_panoptic_json(data) -> bool:
    """COCO panoptic has one annotation (with ``segments_info``) per image; a file with images
    but no annotations is an instances file of images without objects."""
    if not (
        isinstance(data, dict)
        and isinstance(data.get("images"), list)
        and isinstance(data.get("categories"), list)
        and isinstance(data.get("annotations"), list)
    ):
        return False
    if not data["annotations"]:
        return not data["images"]
    return all(isinstance(a, dict) and "segments_info" in a for a in data["annotations"][:50])
