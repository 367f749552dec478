"""Per-image output files, for looking at results and for tools that read COCO panoptic PNGs.

For an image with key ``sub/cat.jpg`` (the original name is kept whole, so ``cat.jpg`` and
``cat.png`` never collide; page 3 of ``stack.tif`` is ``stack.tif_p3``)::

    panoptic/sub/cat.jpg.png    COCO panoptic PNG: segment id = R + 256 G + 256^2 B, 0 = unlabeled
    segments/sub/cat.jpg.json   the image's COCO panoptic annotation: segments_info with
                                category names, scores and boxes, plus the image's size
    overlay/sub/cat.jpg.png     the segments blended over the image, for a quick look

The JSON also records the source file (``source``: path and page) and the store's labelset id
(``labels``), so that ``relabel`` redraws these files under a new vocabulary.

Each file is written atomically; the JSON comes last, and an image counts as written when all
three exist.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_odise.batch.reading import PAGE_MARK, Item
from napari_odise.io.boxes import bounding_boxes
from napari_odise.io.images import write_png
from napari_odise.io.panoptic_png import write_panoptic_png
from napari_odise.io.stable_json import read_json, write_json
from napari_odise.result import PanopticResult

FOLDERS = ("panoptic", "segments", "overlay")
_SUFFIX = {"panoptic": ".png", "segments": ".json", "overlay": ".png"}


def output_stem(key: str) -> str:
    return key.replace(PAGE_MARK, "_p")


def segments_info(result: PanopticResult) -> list[dict]:
    """COCO panoptic ``segments_info`` plus the category name, thing flag and score."""
    boxes = bounding_boxes(result.label_map, result.segments["id"].tolist())
    info = []
    for row in result.segments.itertuples(index=False):
        entry = {
            "id": int(row.id),
            "category_id": int(row.category_id),
            "category": str(row.category),
            "isthing": int(bool(row.isthing)),
            "area": int(row.area),
            "bbox": boxes[int(row.id)],
            "iscrowd": 0,
        }
        if not np.isnan(row.score):
            entry["score"] = float(row.score)
        info.append(entry)
    return info


class ImageFiles:
    def __init__(self, out: str | Path):
        self.out = Path(out)

    def paths(self, key: str) -> dict[str, Path]:
        stem = output_stem(key)
        return {name: self.out / name / f"{stem}{_SUFFIX[name]}" for name in FOLDERS}

    def has(self, key: str) -> bool:
        return all(path.is_file() for path in self.paths(key).values())

    def read_annotation(self, key: str) -> dict | None:
        """The image's segments JSON, or None when it has not been written."""
        path = self.paths(key)["segments"]
        return read_json(path) if path.is_file() else None

    def write(
        self, key: str, rgb: np.ndarray | None, result: PanopticResult, model: str,
        source: Item | None = None, labels: str | None = None,
    ) -> dict[str, Path]:
        """Write the three files (``rgb`` None: no overlay, and a stale one is removed).

        ``source`` (the image file and page) and ``labels`` (the store's labelset id) are
        recorded so that re-labelling can redraw the overlay and knows which files are current.
        """
        paths = self.paths(key)
        write_panoptic_png(paths["panoptic"], result.label_map)
        if rgb is not None:
            write_png(paths["overlay"], result.overlay(rgb))
        else:
            paths["overlay"].unlink(missing_ok=True)
        height, width = result.label_map.shape
        annotation = {
            "image": key,
            "file_name": paths["panoptic"].name,
            "height": int(height),
            "width": int(width),
            "model": model,
            "vocabulary": result.vocabulary.name,
            "segments_info": segments_info(result),
        }
        if source is not None:
            annotation["source"] = {"path": str(Path(source.path).resolve()), "page": int(source.page)}
        if labels is not None:
            annotation["labels"] = labels
        write_json(paths["segments"], annotation, indent=1)
        return paths
