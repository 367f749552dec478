"""The refinement panel's actions: one ``refine`` edit on one plane of a layer, applied undoably.

Each action syncs the table first (so it sees the latest brush strokes), runs the pure edit from
:mod:`napari_odise.refine` on the plane's map and table, and commits the result through
:meth:`SegmentationLayer.commit` (one napari undo step; segments whose category or score changed
get fresh ids). Actions return the layer ids the user should see selected afterwards.
"""

from __future__ import annotations

from napari_odise import refine
from napari_odise.vocabulary import Category

from .layer_state import Row, SegmentationLayer
from .planes import PlaneKey


def _edit(state: SegmentationLayer, key: PlaneKey, edit, *args, **kwargs) -> dict[int, int]:
    state.sync()
    old_table = state.plane_table(key)
    new_map, new_table = edit(state.plane(key).copy(), old_table, *args, **kwargs)
    return state.commit(key, new_map, new_table, old_table)


def reassign(state: SegmentationLayer, key: PlaneKey, ids, category: Category) -> list[int]:
    """Give segments another category; returns their ids afterwards (fresh where it changed)."""
    fresh = _edit(state, key, refine.reassign, ids, category)
    return [fresh.get(i, i) for i in sorted(set(ids))]


def merge(state: SegmentationLayer, key: PlaneKey, ids) -> int:
    """One segment from several (category of the largest, area-weighted score); returns its id."""
    ids = sorted(set(ids))
    fresh = _edit(state, key, refine.merge, ids)
    return fresh.get(ids[0], ids[0])


def split(state: SegmentationLayer, key: PlaneKey, segment_id: int) -> list[int]:
    """Each connected part becomes its own segment; returns the ids of all parts."""
    fresh = _edit(state, key, refine.split_connected, segment_id)
    return [segment_id, *sorted(fresh.values())]


def delete(state: SegmentationLayer, key: PlaneKey, ids) -> None:
    _edit(state, key, refine.delete, ids)


def fill_holes(state: SegmentationLayer, key: PlaneKey, segment_id: int) -> None:
    _edit(state, key, refine.fill_holes, segment_id)


def remove_small(state: SegmentationLayer, key: PlaneKey, min_size: int, ids=None) -> None:
    """Parts smaller than ``min_size`` pixels become unlabeled (of ``ids`` only, when given)."""
    _edit(state, key, refine.remove_small, min_size, ids=ids)


def new_segment(state: SegmentationLayer, category: Category) -> int:
    """A fresh id of ``category`` selected for napari's brush (paint mode); returns the id."""
    state.sync()
    segment_id = state.allocate()
    state.rows[segment_id] = Row(category.id)
    state.pending.add(segment_id)
    state.sync()  # shows the category colour for the id before the first stroke
    state.layer.selected_label = segment_id
    state.layer.mode = "paint"
    return segment_id


def apply_scores(
    state: SegmentationLayer, key: PlaneKey, segment_id: int, scores: dict[int, float], adopt_best: bool
) -> int:
    """Set a segment's score from the model's re-scoring (``Predictor.rescore``): its own
    category's probability, or with ``adopt_best`` the most probable category and its
    probability. Returns the segment's id afterwards."""
    state.sync()
    old_table = state.plane_table(key)
    table = old_table.copy()
    row = table.index[table["id"] == segment_id]
    if row.empty:
        raise ValueError(f"segment {segment_id} is not in this plane")
    category_id = int(table.loc[row[0], "category_id"])
    if adopt_best or category_id not in scores:
        category_id = max(scores, key=scores.get)
        category = state.vocabulary.by_id(category_id)
        table.loc[row, ["category_id", "category", "isthing"]] = [
            category.id,
            category.name,
            category.isthing,
        ]
    table.loc[row, "score"] = scores[category_id]
    fresh = state.commit(key, state.plane(key).copy(), table, old_table)
    return fresh.get(segment_id, segment_id)
