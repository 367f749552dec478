"""Label maps saved as images (PNG/TIFF) by other tools, turned into results.

Two kinds of file, told apart by whether a segments table comes with them:

* a *segment* map (ids per pixel, with a table saying each id's category): 2-D integer images,
  or RGB PNGs in the COCO panoptic id encoding;
* a *category* map (a category id per pixel, no table): each stuff category becomes one
  segment, each 4-connected region of a thing category one instance, ids in vocabulary order
  then raster order. Which value means "unlabeled" must be known: 0 unless 0 is a category id
  of the vocabulary (ADE20K's wall), in which case the caller has to say.

Segments read from files count as ``source = "model"`` (not changed by a person in napari-odise)
unless the table says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from napari_odise.io.errors import DatasetError
from napari_odise.io.images import read_image
from napari_odise.io.panoptic_png import rgb_to_ids
from napari_odise.io.stable_json import read_json
from napari_odise.result import SOURCES, PanopticResult, category_fields, segments_table
from napari_odise.vocabulary import Vocabulary


def read_label_image(path: str | os.PathLike) -> np.ndarray:
    """int32 map from a 2-D integer image, or from an RGB(A) uint8 panoptic-encoded image."""
    pixels = read_image(path)
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4) and pixels.dtype == np.uint8:
        return rgb_to_ids(pixels)
    if pixels.ndim != 2 or not np.issubdtype(pixels.dtype, np.integer):
        raise DatasetError(
            f"{path}: a label image must be 2-D integers (or RGB in the COCO panoptic "
            f"encoding), got {pixels.dtype} of shape {pixels.shape}"
        )
    if pixels.size and (pixels.min() < 0 or pixels.max() > np.iinfo(np.int32).max):
        raise DatasetError(f"{path}: label values must lie in 0..2**31-1")
    return pixels.astype(np.int32)


def default_unlabeled(vocabulary: Vocabulary) -> int:
    if 0 in vocabulary.ids:
        raise DatasetError(
            "category id 0 is in the vocabulary, so 0 cannot mean unlabeled: say which value "
            "marks unlabeled pixels (e.g. 255)"
        )
    return 0


def result_from_category_map(
    category_map: np.ndarray, vocabulary: Vocabulary, unlabeled: int | None = None
) -> PanopticResult:
    """Segments from a map of category ids (see the module notes)."""
    category_map = np.asarray(category_map)
    unlabeled = default_unlabeled(vocabulary) if unlabeled is None else int(unlabeled)
    values = np.unique(category_map)
    unknown = sorted(set(values.tolist()) - set(vocabulary.ids) - {unlabeled})
    if unknown:
        raise DatasetError(
            f"values {unknown[:10]} are neither category ids of vocabulary "
            f"{vocabulary.name!r} nor the unlabeled value {unlabeled}"
        )
    label_map = np.zeros(category_map.shape, dtype=np.int32)
    rows = []
    next_id = 1
    for category in vocabulary:
        if category.id == unlabeled or category.id not in values:
            continue
        mask = category_map == category.id
        if category.isthing:
            parts, count = ndimage.label(mask)
            label_map[mask] = parts[mask] + (next_id - 1)
            ids = range(next_id, next_id + count)
        else:
            label_map[mask] = next_id
            ids = range(next_id, next_id + 1)
        for segment_id in ids:
            rows.append((segment_id, *category_fields(category), np.nan, 0, "model"))
        next_id = ids.stop
    return _with_areas(label_map, rows, vocabulary)


def read_segments_table(path: str | os.PathLike) -> pd.DataFrame:
    """A table with ``id`` and ``category_id`` (or ``category``), optional ``score``/``source``:
    CSV, or JSON as a list of objects or a COCO-style ``{"segments_info": [...]}``."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = read_json(path)
        if isinstance(data, dict):
            data = data.get("segments_info", data.get("segments"))
        if not isinstance(data, list):
            raise DatasetError(f"{path}: expected a list of segments or a 'segments_info' list")
        table = pd.DataFrame(data)
    else:
        table = pd.read_csv(path)
    if "id" not in table.columns or not {"category_id", "category"} & set(table.columns):
        raise DatasetError(f"{path}: the table needs an 'id' and a 'category_id' or 'category'")
    return table


def result_from_segment_map(
    label_map: np.ndarray, vocabulary: Vocabulary, table: pd.DataFrame
) -> PanopticResult:
    """Segments from a map of segment ids and a table of their categories."""
    label_map = np.asarray(label_map, dtype=np.int32)
    rows = []
    for record in table.to_dict("records"):
        segment_id = int(record["id"])
        try:
            if "category_id" in record and not pd.isna(record["category_id"]):
                category = vocabulary.by_id(int(record["category_id"]))
            else:
                category = vocabulary.by_name(str(record["category"]))
        except KeyError as error:
            raise DatasetError(f"segment {segment_id}: {error.args[0]}") from None
        score = record.get("score")
        source = record.get("source", "model")
        if source not in SOURCES:
            source = "model"
        rows.append((segment_id, *category_fields(category),
                     np.nan if score is None or pd.isna(score) else float(score), 0, source))
    described = {row[0] for row in rows}
    present = set(np.unique(label_map).tolist()) - {0}
    if present - described:
        raise DatasetError(
            f"segment ids {sorted(present - described)[:10]} are in the label image but not in "
            f"the table"
        )
    rows = [row for row in rows if row[0] in present]
    return _with_areas(label_map, rows, vocabulary)


def _with_areas(label_map: np.ndarray, rows: list[tuple], vocabulary: Vocabulary):
    areas = np.bincount(label_map.ravel(), minlength=1)
    rows = [(*row[:5], int(areas[row[0]]), row[6]) for row in rows]
    table = segments_table(*zip(*rows)) if rows else segments_table()
    result = PanopticResult(label_map, table, vocabulary)
    result.validate()
    return result
