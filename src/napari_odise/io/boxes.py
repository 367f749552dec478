"""COCO boxes ``[x, y, width, height]`` (integer pixels) of the segments of a label map."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

# find_objects allocates one slot per id up to the largest: above this, ids are compacted first.
_DIRECT_LIMIT = 1 << 16


def bounding_boxes(label_map: np.ndarray, ids: Iterable[int]) -> dict[int, list[int]]:
    """Box of each requested id; ids without pixels get no entry."""
    ids = [int(i) for i in ids]
    if not ids or label_map.size == 0:
        return {}
    largest = int(label_map.max())
    if largest <= _DIRECT_LIMIT:
        slices = ndimage.find_objects(label_map)
        position = {i: i - 1 for i in ids if 1 <= i <= largest}
    else:
        present, compact = np.unique(label_map, return_inverse=True)
        slices = ndimage.find_objects(compact.reshape(label_map.shape).astype(np.int32) + 1)
        position = {int(v): k for k, v in enumerate(present)}
    boxes = {}
    for segment_id in ids:
        k = position.get(segment_id)
        box = slices[k] if k is not None and k < len(slices) else None
        if box is None:
            continue
        rows, columns = box
        boxes[segment_id] = [
            columns.start, rows.start, columns.stop - columns.start, rows.stop - rows.start
        ]
    return boxes
