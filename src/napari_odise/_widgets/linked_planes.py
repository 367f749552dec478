"""Linking the planes of a stack's Labels layer: one object, one id (and colour) through the stack.

The tracks come from the core (:func:`napari_odise.stack_linking.link_tracks`: Hungarian matching
on IoU per category between neighbouring planes). In the layer, ids are already unique across
the stack, so a segment that starts or stays alone keeps its id; the segments of a track that
spans several planes under different ids take ONE fresh id (the layer's fresh-id rule: the old
ids and their rows stay remembered, so napari's undo brings them back as they were). Its row:
the track's category, the mean of its segments' scores, "model" while every segment in it is the
model's untouched output (then its area is the track's pixels), else "edited".

The layer's ``info["stack_links"] = {"threshold", "axis"}`` records that (and how) it is linked:
a later run or vocabulary change links it again by the same rule, and export writes each
segment's ``track_id`` (see :mod:`napari_odise.io.layers`).
"""

from __future__ import annotations

import math

import numpy as np

from napari_odise.io.layers import count_ids
from napari_odise.io.planes import all_planes
from napari_odise.stack_linking import DEFAULT_THRESHOLD, link_tracks

from .layer_state import Row, SegmentationLayer

STACK_LINKS = "stack_links"


def link_layer_planes(state: SegmentationLayer, threshold: float = DEFAULT_THRESHOLD, axis: int = 0) -> int:
    """Link the segmented planes of a stack layer as ONE undo step and record the rule in the
    layer's metadata; returns how many tracks span more than one plane (0 for a 2-D layer)."""
    state.sync()
    data = state.layer.data
    if np.ndim(data) < 3:
        return 0
    table = state.table.set_index("id")
    categories = dict(zip(state.table["id"].tolist(), state.table["category_id"].tolist()))
    planes = {}
    counts = {}
    for key in all_planes(data.shape):
        label_map = np.asarray(state.plane(key))
        ids, areas, _ = count_ids(label_map)
        if ids.size:
            planes[key], counts[key] = (label_map, categories), dict(zip(ids.tolist(), areas.tolist()))
    renamed: dict = {}  # plane -> {old id: track id}
    spanning = 0
    for track in link_tracks(planes, threshold, axis):
        if len(track) < 2:
            continue
        spanning += 1
        ids = sorted({segment_id for _, segment_id in track})
        if len(ids) == 1:
            continue  # linked before: already one id
        fresh = state.allocate()
        state.rows[fresh] = _track_row(state, table, track, ids, counts)
        for key, segment_id in track:
            renamed.setdefault(key, {})[segment_id] = fresh
    changes = []
    for key, mapping in renamed.items():
        old = planes[key][0]
        lookup = np.arange(int(old.max()) + 1, dtype=np.int32)
        lookup[list(mapping)] = list(mapping.values())
        changes.append((key, np.array(old), lookup[old]))
    if changes:
        state.write(changes)
    state.info[STACK_LINKS] = {"threshold": float(threshold), "axis": int(axis)}
    state.write_metadata()
    return spanning


def spanning_ids(state: SegmentationLayer) -> int:
    """How many ids of a stack layer are present in more than one plane."""
    data = state.layer.data
    if np.ndim(data) < 3:
        return 0
    planes_of: dict[int, int] = {}
    for key in all_planes(data.shape):
        for segment_id in count_ids(state.plane(key))[0].tolist():
            planes_of[segment_id] = planes_of.get(segment_id, 0) + 1
    return sum(1 for n in planes_of.values() if n > 1)


def unlink_record(state: SegmentationLayer) -> None:
    """Forget that the layer is linked (ids stay as they are)."""
    if state.info.pop(STACK_LINKS, None) is not None:
        state.write_metadata()


def recorded_rule(state: SegmentationLayer) -> tuple[float, int] | None:
    """(threshold, axis) of a linked layer, None when it is not linked."""
    rule = state.info.get(STACK_LINKS)
    if not isinstance(rule, dict):
        return None
    return float(rule.get("threshold", DEFAULT_THRESHOLD)), int(rule.get("axis", 0))


def _track_row(state, table, track, ids, counts) -> Row:
    members = table.loc[ids]
    area = sum(counts[key][segment_id] for key, segment_id in track)
    # model only while every member is the model's untouched output and all its pixels are here
    model = bool((members["source"] == "model").all()) and int(members["area"].sum()) == area
    scores = [float(table.at[segment_id, "score"]) for _, segment_id in track]
    scores = [s for s in scores if not math.isnan(s)]
    row = Row(
        category_id=int(members["category_id"].iloc[0]),
        score=sum(scores) / len(scores) if scores else math.nan,
        source="model" if model else "edited",
        area=area,
    )
    if hasattr(row, "reviewed"):  # a track is reviewed when every segment in it was
        row.reviewed = all(getattr(state.rows.get(i), "reviewed", False) for i in ids)
    return row
