"""COCO instances: thing segments as RLE masks (pycocotools), with box and area.

Each annotation is ``{"id", "image_id", "category_id", "segmentation": {"size", "counts"},
"area", "bbox", "iscrowd"}`` with compressed RLE counts as text, plus extra keys COCO readers
ignore: ``segment_id`` (the segment's id in the panoptic PNG), ``source`` and ``score`` (left out
when NaN), as in the panoptic file; ``iscrowd`` follows it too. Only thing segments with a
category are written; the file's ``categories`` are the thing categories of the dataset.

Reading back builds one label map per image. COCO instances may overlap, a label map cannot:
masks are painted largest first, so where masks overlap the smaller one wins (a small object on
a large one stays visible). What this loses is reported in ``info``: ``overlap_pixels`` (pixels
claimed by more than one mask) and ``hidden_annotations`` (annotation ids left with no pixel,
which are dropped). Segment ids come from ``segment_id`` when every annotation of the image has a
distinct one, else 1..n in annotation order. Areas are recounted from the map.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from napari_odise.io.boxes import bounding_boxes
from napari_odise.io.categories import vocabulary_from_coco
from napari_odise.io.coco_files import (
    image_dirs,
    image_info,
    image_source,
    select_images,
    vocabulary_name,
)
from napari_odise.io.errors import DatasetError
from napari_odise.io.panoptic_png import MAX_SEGMENT_ID
from napari_odise.io.stable_json import read_json
from napari_odise.pixel_budget import check_pixels
from napari_odise.result import SOURCES, UNASSIGNED, ImageSource, PanopticResult, segments_table


def instance_annotations(
    result: PanopticResult, image_id: int, annotation_ids: Iterator[int]
) -> list[dict]:
    """One COCO instance annotation per thing segment of ``result``, ids drawn in id order."""
    segments = result.segments
    things = segments[segments["isthing"] & (segments["category_id"] != UNASSIGNED)]
    if things.empty:
        return []
    boxes = bounding_boxes(result.label_map, things["id"])
    crowd = {int(i) for i in result.info.get("iscrowd", ())}
    transposed = np.ascontiguousarray(result.label_map.T)  # masks come out column-major
    annotations = []
    for row in things.itertuples(index=False):
        mask = (transposed == row.id).view(np.uint8).T
        rle = mask_utils.encode(mask)
        annotation = {
            "id": int(next(annotation_ids)),
            "image_id": int(image_id),
            "category_id": int(row.category_id),
            "segmentation": {"size": [int(v) for v in rle["size"]],
                             "counts": rle["counts"].decode("ascii")},
            "area": int(row.area),
            "bbox": boxes[int(row.id)],
            "iscrowd": int(int(row.id) in crowd),
            "segment_id": int(row.id),
            "source": str(row.source),
        }
        if not math.isnan(row.score):
            annotation["score"] = float(row.score)
        annotations.append(annotation)
    return annotations


def is_instances_json(data) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("images"), list)
        and isinstance(data.get("categories"), list)
        and isinstance(data.get("annotations"), list)
        and all(isinstance(a, dict) and "segmentation" in a for a in data["annotations"][:50])
    )


def read_instances(
    json_path: str | os.PathLike,
    image_name: str | None = None,
    *,
    image_dir: str | os.PathLike | None = None,
) -> list[PanopticResult]:
    """The images of a COCO instances JSON as results (see the module notes on overlaps).

    ``source`` and ``info`` as for :func:`~napari_odise.io.read_panoptic` (``format`` = ``"coco_instances"``)
    plus ``annotation_ids`` (segment id -> annotation id), ``overlap_pixels`` and
    ``hidden_annotations``. Categories without ``isthing`` count as things.
    """
    json_path = Path(json_path)
    data = read_json(json_path)
    if not is_instances_json(data):
        raise DatasetError(
            f"{json_path} is not a COCO instances file: it needs 'images', 'categories' and "
            f"'annotations' with 'segmentation'"
        )
    vocabulary, supercategories = vocabulary_from_coco(
        data["categories"], name=vocabulary_name(data, json_path), isthing_default=True
    )
    by_image: dict[int, list[dict]] = {}
    for annotation in data["annotations"]:
        by_image.setdefault(int(annotation["image_id"]), []).append(annotation)
    folders = image_dirs(json_path, image_dir)
    results = []
    for image in select_images(data["images"], image_name, json_path):
        info = image_info(image, json_path, "coco_instances")
        info["supercategories"] = dict(supercategories)
        annotations = by_image.get(int(image["id"]), [])
        results.append(_result(image, annotations, vocabulary, info, image_source(image, folders)))
    return results


def _result(
    image: dict, annotations: list[dict], vocabulary, info: dict, source: ImageSource
) -> PanopticResult:
    where = f"{info['annotations']}, image {image['file_name']!r}"
    height, width = image.get("height"), image.get("width")
    check_pixels(height, width, where)  # before a label map of that size is allocated
    rles = [_rle(a["segmentation"], height, width, where) for a in annotations]
    ids = _segment_ids(annotations)
    label_map = np.zeros((height, width), dtype=np.int32)
    coverage = np.zeros((height, width), dtype=np.uint16)
    areas = [int(mask_utils.area(rle)) for rle in rles]
    for k in sorted(range(len(rles)), key=lambda k: -areas[k]):  # stable: ties keep file order
        mask = mask_utils.decode(rles[k]).astype(bool)
        label_map[mask] = ids[k]
        coverage += mask
    pixel_counts = np.bincount(label_map.ravel(), minlength=max(ids, default=0) + 1)
    rows, hidden, crowd, annotation_ids = [], [], [], {}
    for annotation, segment_id in zip(annotations, ids):
        if pixel_counts[segment_id] == 0:
            hidden.append(annotation.get("id"))
            continue
        category_id = int(annotation["category_id"])
        try:
            category = vocabulary.by_id(category_id)
        except KeyError:
            raise DatasetError(
                f"{where}: annotation {annotation.get('id')} has category_id {category_id}, "
                f"which is not in categories"
            ) from None
        made_by = annotation.get("source", "model")
        if made_by not in SOURCES:
            raise DatasetError(f"{where}: annotation {annotation.get('id')} has source {made_by!r}")
        score = annotation.get("score")
        rows.append(
            (segment_id, category.id, category.name, category.isthing,
             np.nan if score is None else float(score), int(pixel_counts[segment_id]), made_by)
        )
        annotation_ids[segment_id] = annotation.get("id")
        if annotation.get("iscrowd", 0):
            crowd.append(segment_id)
    info = {
        **info,
        "annotation_ids": annotation_ids,
        "overlap_pixels": int(np.count_nonzero(coverage > 1)),
        "hidden_annotations": hidden,
    }
    if crowd:
        info["iscrowd"] = sorted(crowd)
    table = segments_table(*zip(*rows)) if rows else segments_table()
    return PanopticResult(label_map, table, vocabulary, info=info, source=source)


def _segment_ids(annotations: list[dict]) -> list[int]:
    given = [a.get("segment_id") for a in annotations]
    usable = all(
        isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= MAX_SEGMENT_ID for i in given
    )
    if usable and len(set(given)) == len(given):
        return given
    return list(range(1, len(annotations) + 1))


def _rle(segmentation, height: int, width: int, where: str) -> dict:
    """Compressed RLE of a polygon list, uncompressed RLE or compressed RLE segmentation."""
    try:
        if isinstance(segmentation, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE (crowds)
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            counts = segmentation["counts"]
            rle = {"size": segmentation["size"],
                   "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        size = [int(v) for v in rle["size"]]
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise DatasetError(f"{where}: unreadable segmentation ({error})") from None
    if size != [height, width]:
        raise DatasetError(f"{where}: a mask is {size[1]}x{size[0]}, the image {width}x{height}")
    return rle
