"""One object, one id through a z/t stack: link segments of neighbouring planes by mask overlap.

ODISE segments a stack plane by plane, so the same cell or car gets an unrelated id in every
plane. Linking gives it one id (a *track*) through the stack:

* Planes are neighbours along one leading axis (``axis``, default 0: the z or t of a 3-D stack;
  in a 4-D (t, z, ...) stack each line of planes along that axis is linked on its own).
* Between plane k and plane k+1, for each category separately, segments are paired by the
  Hungarian method (``scipy.optimize.linear_sum_assignment``) to maximise the summed IoU of the
  pairs; a pair is a link when its IoU is at least ``threshold`` (default
  :data:`DEFAULT_THRESHOLD`). Each segment links to at most one segment in each neighbour, so
  tracks never branch or merge.
* Categories never link across: a "person" never continues as a "dog", even where the masks
  coincide. Unassigned segments (no category) never link.
* Stuff links by the same rule. The panoptic merge makes one stuff segment per category per plane,
  so the pairing is trivial, and the IoU threshold still keeps a "sky" on top of one plane from
  continuing as a "sky" at the bottom of the next. A person who wants all of a plane's stuff
  linked regardless can lower the threshold.

The default threshold, 0.3, tolerates what neighbouring planes do to one object: moving by about
a third of its width between frames, or a cross-section shrinking towards the top of a cell
(concentric discs of radius 10 and 6 have IoU 0.36); objects that merely touch stay apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from napari_odise.errors import InvalidInputError
from napari_odise.io.planes import PlaneKey
from napari_odise.result import UNASSIGNED, PanopticResult

DEFAULT_THRESHOLD = 0.3

Segment = tuple[PlaneKey, int]  # (plane, the segment's id in that plane)
Plane = tuple[np.ndarray, Mapping[int, int]]  # (label map, category id by segment id)


@dataclass(frozen=True)
class LinkedStack:
    """A linked stack: ``results`` relabelled so a segment's id is its track id (unique across the
    stack, 1.. in order of first appearance), and ``tracks[key][id in the plane as given] =
    track id``: the link record."""

    results: dict[PlaneKey, PanopticResult]
    tracks: dict[PlaneKey, dict[int, int]]
    threshold: float
    axis: int

    def linked(self) -> int:
        """How many tracks span more than one plane."""
        seen: dict[int, int] = {}
        for ids in self.tracks.values():
            for track in ids.values():
                seen[track] = seen.get(track, 0) + 1
        return sum(1 for n in seen.values() if n > 1)


def overlaps(earlier: np.ndarray, later: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids > 0 of ``earlier``, ids > 0 of ``later``, IoU matrix earlier x later) of two label maps."""
    if earlier.shape != later.shape:
        raise InvalidInputError(f"planes of one stack must have one shape, not {earlier.shape} and {later.shape}")
    a_ids, a_rank = _ranks(earlier)
    b_ids, b_rank = _ranks(later)
    columns = len(b_ids) + 1
    pairs = np.bincount((a_rank * columns + b_rank).ravel(), minlength=(len(a_ids) + 1) * columns)
    pairs = pairs.reshape(len(a_ids) + 1, columns)
    a_area, b_area = pairs.sum(axis=1)[1:], pairs.sum(axis=0)[1:]
    intersection = pairs[1:, 1:].astype(np.float64)
    union = a_area[:, None] + b_area[None, :] - intersection
    return a_ids, b_ids, np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _ranks(label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted ids > 0 of a map, the map with each id replaced by its rank 1.., 0 kept)."""
    flat = np.asarray(label_map)
    largest = int(flat.max(initial=0))
    if largest <= 4 * flat.size + 1024:
        present = np.bincount(flat.ravel(), minlength=largest + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present)
        lookup = np.zeros(largest + 1, dtype=np.int64)
        lookup[ids] = np.arange(1, len(ids) + 1)
        return ids, lookup[flat]
    ids, inverse = np.unique(flat, return_inverse=True)  # a few huge ids: no giant lookup table
    rank = inverse.reshape(flat.shape).astype(np.int64)
    if ids.size and ids[0] == 0:
        return ids[1:], rank
    return ids, rank + 1


def match_planes(earlier: Plane, later: Plane, threshold: float = DEFAULT_THRESHOLD) -> dict[int, int]:
    """Links from one plane to the next: ``{id in later: id in earlier}`` (see the module notes)."""
    _check_threshold(threshold)
    (a_map, a_categories), (b_map, b_categories) = earlier, later
    a_ids, b_ids, iou = overlaps(a_map, b_map)
    a_cat = np.array([a_categories.get(int(i), UNASSIGNED) for i in a_ids], dtype=np.int64)
    b_cat = np.array([b_categories.get(int(i), UNASSIGNED) for i in b_ids], dtype=np.int64)
    links = {}
    for category in np.intersect1d(a_cat, b_cat).tolist():
        if category == UNASSIGNED:
            continue
        rows, cols = np.flatnonzero(a_cat == category), np.flatnonzero(b_cat == category)
        block = iou[np.ix_(rows, cols)]
        if not (block >= threshold).any():
            continue
        picked_rows, picked_cols = linear_sum_assignment(block, maximize=True)
        for r, c in zip(picked_rows.tolist(), picked_cols.tolist()):
            if block[r, c] >= threshold and block[r, c] > 0:
                links[int(b_ids[cols[c]])] = int(a_ids[rows[r]])
    return links


def link_tracks(
    planes: Mapping[PlaneKey, Plane], threshold: float = DEFAULT_THRESHOLD, axis: int = 0
) -> list[list[Segment]]:
    """Every segment of every plane in exactly one track, a track being its segments in plane
    order; tracks are listed in order of their first segment (plane order, then id)."""
    _check_threshold(threshold)
    keys = sorted(planes)
    if any(len(k) != len(keys[0]) for k in keys) or (keys and not keys[0]):
        raise InvalidInputError(f"plane keys must be tuples of one length >= 1, not {keys}")
    if keys and not 0 <= axis < len(keys[0]):
        raise InvalidInputError(f"axis {axis} is not a leading axis of planes keyed {keys[0]}")
    track_of: dict[Segment, list[Segment]] = {}
    tracks: list[list[Segment]] = []
    for key in keys:
        label_map, categories = planes[key]
        before = (*key[:axis], key[axis] - 1, *key[axis + 1 :])
        links = match_planes(planes[before], planes[key], threshold) if before in planes else {}
        for segment_id in _ranks(label_map)[0].tolist():
            if segment_id in links:
                track = track_of[(before, links[segment_id])]
            else:
                track = []
                tracks.append(track)
            track.append((key, segment_id))
            track_of[(key, segment_id)] = track
    return tracks


def link_stack(
    results: Mapping[PlaneKey, PanopticResult], threshold: float = DEFAULT_THRESHOLD, axis: int = 0
) -> LinkedStack:
    """Link the segmented planes of a stack (see the module notes); a plane missing from
    ``results`` breaks the links across it. Each relabelled result keeps its table rows (score,
    source, area of that plane), its model tensors and query ids under the new ids, and records
    ``info["track_ids"]`` (each id is its own track id) and ``info["stack_links"]`` (the rule)."""
    planes = {
        key: (r.label_map, dict(zip(r.segments["id"].tolist(), r.segments["category_id"].tolist())))
        for key, r in results.items()
    }
    tracks: dict[PlaneKey, dict[int, int]] = {key: {} for key in results}
    for track_id, track in enumerate(link_tracks(planes, threshold, axis), start=1):
        for key, segment_id in track:
            tracks[key][segment_id] = track_id
    rule = {"threshold": float(threshold), "axis": int(axis)}
    relabelled = {key: _renumbered(results[key], tracks[key], rule) for key in sorted(results)}
    return LinkedStack(relabelled, tracks, float(threshold), int(axis))


def _renumbered(result: PanopticResult, new_ids: Mapping[int, int], rule: dict) -> PanopticResult:
    old = np.array(sorted(new_ids), dtype=np.int64)
    lookup = np.zeros(int(old.max(initial=0)) + 1, dtype=np.int32)
    lookup[old] = [new_ids[i] for i in old.tolist()]
    segments = result.segments.assign(id=lookup[result.segments["id"].to_numpy()].astype(np.int64))
    segments = segments.sort_values("id", kind="stable").reset_index(drop=True)
    info = dict(result.info)
    if "iscrowd" in info:
        info["iscrowd"] = sorted(new_ids[int(i)] for i in info["iscrowd"] if int(i) in new_ids)
    info["track_ids"] = {int(i): int(i) for i in segments["id"].tolist()}
    info["stack_links"] = dict(rule)
    by_id = {  # every field keyed by segment id follows the ids
        "query_ids": {new_ids[k]: list(v) for k, v in result.query_ids.items() if k in new_ids},
    }
    if isinstance(getattr(result, "margins", None), Mapping):
        by_id["margins"] = {new_ids[k]: v for k, v in result.margins.items() if k in new_ids}
    renumbered = dataclasses.replace(
        result, label_map=lookup[result.label_map], segments=segments, info=info, **by_id
    )
    renumbered.validate()
    return renumbered


def _check_threshold(threshold: float) -> None:
    if not 0.0 <= float(threshold) <= 1.0:
        raise InvalidInputError(f"the IoU threshold must lie in [0, 1], not {threshold}")
