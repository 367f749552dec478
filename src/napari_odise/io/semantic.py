"""Semantic PNGs: one category *index* per pixel, the position of the category in the dataset
vocabulary (the order of the model's class logits), with a legend file mapping index -> id.

uint8 PNGs while the vocabulary has at most 255 categories (255 = unlabeled), uint16 above
(65535 = unlabeled). Whatever the legend says, the unlabeled value is the largest value of the
PNG's own bit depth, so a file can always be read on its own. New categories join the end of a
dataset's vocabulary, so indices already written never change meaning; when a dataset grows past
255 categories its 8-bit PNGs are rewritten as 16-bit before the legend changes.
Unassigned (and skipped) segments are unlabeled.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import numpy as np

from napari_odise.io.errors import DatasetError
from napari_odise.io.images import read_png, write_png
from napari_odise.result import UNASSIGNED, PanopticResult
from napari_odise.vocabulary import Vocabulary

UNLABELED = {"uint8": 255, "uint16": 65535}


def semantic_dtype(vocabulary: Vocabulary) -> str:
    if len(vocabulary) <= 255:
        return "uint8"
    if len(vocabulary) <= 65535:
        return "uint16"
    raise DatasetError(
        f"{len(vocabulary)} categories do not fit a 16-bit semantic PNG: export without semantic"
    )


def semantic_indices(
    result: PanopticResult, vocabulary: Vocabulary, skipped: Collection[int] = ()
) -> np.ndarray:
    """Per pixel, the index in ``vocabulary`` of the pixel's category (unlabeled: max value)."""
    dtype = semantic_dtype(vocabulary)
    unlabeled = UNLABELED[dtype]
    largest = max(int(result.label_map.max(initial=0)), 0)
    lut = np.full(largest + 1, unlabeled, dtype=dtype)
    skipped = set(int(i) for i in skipped)
    for segment_id, category_id in zip(result.segments["id"], result.segments["category_id"]):
        if category_id == UNASSIGNED or int(segment_id) in skipped:
            continue
        lut[int(segment_id)] = vocabulary.index_of(int(category_id))
    return lut[result.label_map]


def legend(vocabulary: Vocabulary) -> dict:
    dtype = semantic_dtype(vocabulary)
    return {
        "dtype": dtype,
        "unlabeled": UNLABELED[dtype],
        "classes": [
            {
                "index": index,
                "id": category.id,
                "name": category.name,
                "isthing": category.isthing,
                "color": list(category.color),
            }
            for index, category in enumerate(vocabulary)
        ],
    }


def write_semantic_png(path: str | os.PathLike, indices: np.ndarray) -> Path:
    return write_png(path, indices)


def widen_semantic_png(path: str | os.PathLike) -> None:
    """Rewrite an 8-bit semantic PNG as 16-bit (255 -> 65535); 16-bit files are left alone."""
    indices = read_png(path)
    if indices.dtype != np.uint8:
        return
    wide = indices.astype(np.uint16)
    wide[indices == UNLABELED["uint8"]] = UNLABELED["uint16"]
    write_png(path, wide)


def read_semantic(
    png_path: str | os.PathLike, legend_data: dict, unlabeled: int = UNASSIGNED
) -> np.ndarray:
    """int32 map of category ids from a semantic PNG and its legend (``unlabeled`` elsewhere)."""
    indices = read_png(png_path)
    if indices.dtype not in (np.uint8, np.uint16) or indices.ndim != 2:
        raise DatasetError(f"{png_path}: not a gray 8/16-bit semantic PNG")
    void = np.iinfo(indices.dtype).max
    ids = np.full(int(void) + 1, unlabeled, dtype=np.int32)
    for entry in legend_data["classes"]:
        if int(entry["index"]) < void:  # an 8-bit file cannot hold larger indices
            ids[int(entry["index"])] = int(entry["id"])
    return ids[indices]
