"""Per-image output files, for looking at results and for tools that read COCO panoptic PNGs.

For an image with key ``sub/cat.jpg`` (page 3 of ``stack.tif`` is ``stack_p3``)::

    panoptic/sub/cat.png    COCO panoptic PNG: segment id = R + 256 G + 256^2 B, 0 = unlabeled
    segments/sub/cat.json   the image's COCO panoptic annotation: segments_info with category
                            names, scores and boxes, plus the image's size
    overlay/sub/cat.png     the segments blended over the image, for a quick look

Names are the image's name without its extension, as COCO names panoptic PNGs. When two images
of a run would share a name (``a.png`` and ``a.jpg`` in one folder), both keep their whole name
(``a.png.png``, ``a.jpg.png``), and a name already written for another image is never
overwritten: the JSON says which image a name belongs to. Folders written before this rule
(``batch.json`` without ``file_names``) keep whole names throughout, so they resume as they were.

Each file is written atomically; the JSON comes last, and an image counts as written when all
three exist. The JSON also records the source file (``source``: path and page) and the store's
labelset id (``labels``), so that ``relabel`` redraws these files under a new vocabulary.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from napari_odise.batch.reading import PAGE_MARK, Item
from napari_odise.errors import UserError
from napari_odise.io.boxes import bounding_boxes
from napari_odise.io.images import write_png
from napari_odise.io.panoptic_png import write_panoptic_png
from napari_odise.io.stable_json import read_json, write_json
from napari_odise.result import PanopticResult

FOLDERS = ("panoptic", "segments", "overlay")
_SUFFIX = {"panoptic": ".png", "segments": ".json", "overlay": ".png"}
SHORT, WHOLE = "stem", "key"  # file naming: cat.png (this version) or cat.jpg.png (older folders)


class OutputNameTaken(UserError, FileExistsError):
    """Another image's files already have this image's output name."""


def output_stem(key: str, naming: str = SHORT, whole: frozenset[str] = frozenset()) -> str:
    """The files' name for an image key (without the folder's suffix)."""
    path, _, page = key.partition(PAGE_MARK)
    if naming == SHORT and path not in whole:
        posix = PurePosixPath(path)
        path = posix.with_suffix("").as_posix() if posix.suffix else path
    return path + (f"_p{page}" if page else "")


def clashing_keys(file_keys: Iterable[str]) -> frozenset[str]:
    """File keys whose short name another file shares (``a.png``, ``a.jpg``): they keep the whole name."""
    groups = defaultdict(list)
    for key in file_keys:
        groups[output_stem(key).casefold()].append(key)
    return frozenset(key for keys in groups.values() if len(keys) > 1 for key in keys)


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
    def __init__(self, out: str | Path, naming: str = SHORT, whole: frozenset[str] = frozenset()):
        self.out = Path(out)
        self.naming = naming
        self.whole = whole

    def paths(self, key: str, naming: str | None = None) -> dict[str, Path]:
        """Where the image's files go (``naming``: this name form, whatever the clashes)."""
        stem = output_stem(key, self.naming, self.whole) if naming is None else output_stem(key, naming)
        return {name: self.out / name / f"{stem}{_SUFFIX[name]}" for name in FOLDERS}

    def _owner(self, paths: dict[str, Path]) -> str | None:
        """The image the files at ``paths`` belong to (None: not written)."""
        if not paths["segments"].is_file():
            return None
        return read_json(paths["segments"]).get("image")

    def has(self, key: str) -> bool:
        paths = self.paths(key)
        return all(path.is_file() for path in paths.values()) and self._owner(paths) == key

    def locate(self, key: str) -> dict[str, Path] | None:
        """Where the image's files are, under either naming (None: not written)."""
        for naming in (None, WHOLE, SHORT):
            paths = self.paths(key, naming)
            if self._owner(paths) == key:
                return paths
        return None

    def write(
        self, key: str, rgb: np.ndarray | None, result: PanopticResult, model: str,
        source: Item | None = None, labels: str | None = None, at: dict[str, Path] | None = None,
    ) -> dict[str, Path]:
        """Write the three files (``rgb`` None: no overlay, and a stale one is removed).

        ``source`` (the image file and page) and ``labels`` (the store's labelset id) are
        recorded so that re-labelling can redraw the overlay and knows which files are current.
        ``at``: rewrite the image's files where they are (:meth:`locate`).
        """
        paths = at or self.paths(key)
        owner = self._owner(paths)
        if owner not in (None, key):
            raise OutputNameTaken(
                f"the output name {paths['segments'].stem!r} is taken by the image {owner}: rename one of the two"
            )
        earlier = self.locate(key)  # under a name from before a clash appeared: replaced by this one
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
        if earlier is not None and earlier != paths:
            for path in (earlier["segments"], earlier["panoptic"], earlier["overlay"]):
                path.unlink(missing_ok=True)
        return paths
