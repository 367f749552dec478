"""How a new model result (a vocabulary change, or a second run) lands on a plane a person edited.

The rule, for one plane:

1. **Kept as they are:** every pixel of a segment whose source is "edited" (made, painted,
   reassigned, merged, split or resized by a person; its id is preserved), and every unlabeled
   pixel a person cleared (deleted or erased) where the model had labeled something. Such cleared
   pixels are remembered in a ``claimed`` mask (pixels the model labeled in its last result, plus
   pixels kept before), so a deleted segment does not come back.
2. **Replaced:** everything else, i.e. the model's own untouched segments and unlabeled pixels
   nobody cleared, takes the new result, but only where step 1 keeps nothing: a new model segment
   is clipped by the kept pixels (and dropped if nothing of it is left).
3. **Ids:** a new model segment that covers exactly the pixels of an old model segment of the
   same category keeps that segment's id (its score is refreshed); every other new model segment
   gets a fresh id (never used before in the layer), in the result's id order. A fresh id for every
   changed segment is what lets napari's undo bring the previous labels back with their categories.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Placement:
    """Where a result's segments went: ``ids[result_id] = (layer_id, reused)``."""

    label_map: np.ndarray
    claimed: np.ndarray
    ids: dict[int, tuple[int, bool]]


def kept_pixels(old_map: np.ndarray, claimed: np.ndarray, edited_ids) -> np.ndarray:
    """Pixels a new result must not touch (rule 1)."""
    edited = np.asarray(list(edited_ids), dtype=np.int64)
    return np.isin(old_map, edited) | ((old_map == 0) & claimed)


def place_result(
    old_map: np.ndarray,
    claimed: np.ndarray,
    edited_ids,
    old_categories: Mapping[int, int],
    result_map: np.ndarray,
    result_segments: pd.DataFrame,
    allocate: Callable[[], int],
) -> Placement:
    """Merge a result (ids 1..n, table ``result_segments``) into ``old_map`` by the rule above.

    ``old_categories`` maps the plane's model-source segment ids to their category ids.
    """
    keep = kept_pixels(old_map, claimed, edited_ids)
    free = ~keep
    reused = _same_pixels(old_map[free], result_map[free], old_categories, result_segments)
    visible = np.unique(result_map[free])
    ids: dict[int, tuple[int, bool]] = {}
    lut = np.zeros(int(result_map.max(initial=0)) + 1, dtype=np.int32)
    for result_id in result_segments["id"].tolist():
        if result_id in reused:
            ids[result_id] = (reused[result_id], True)
        elif result_id in visible:
            ids[result_id] = (allocate(), False)
        else:
            continue
        lut[result_id] = ids[result_id][0]
    label_map = np.where(keep, old_map, lut[result_map]).astype(np.int32)
    new_claimed = np.where(keep, claimed | (old_map != 0), result_map != 0)
    return Placement(label_map, new_claimed, ids)


def _same_pixels(old: np.ndarray, new: np.ndarray, old_categories, result_segments) -> dict[int, int]:
    """result id -> old id, for pairs covering exactly the same pixels with the same category."""
    if old.size == 0:
        return {}
    base = int(new.max(initial=0)) + 1
    pairs = np.unique(old.astype(np.int64) * base + new)
    a, b = pairs // base, pairs % base
    partners_of_a = np.bincount(a)
    partners_of_b = np.bincount(b)
    result_category = dict(zip(result_segments["id"].tolist(), result_segments["category_id"].tolist()))
    matches = {}
    for old_id, new_id in zip(a.tolist(), b.tolist()):
        if old_id == 0 or new_id == 0 or partners_of_a[old_id] != 1 or partners_of_b[new_id] != 1:
            continue
        if old_id in old_categories and old_categories[old_id] == result_category.get(new_id):
            matches[new_id] = old_id
    return matches
