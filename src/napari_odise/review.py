"""The review queue: a plane's segments, the ones most likely wrong first.

An annotator's time is best spent where the model is least sure, so segments are ordered by a
*confidence* in [0, 1], lowest first, ties by id (so the order is the same on every run):

1. An unassigned segment (no category) has confidence 0: it needs a person whatever else holds.
2. Otherwise the evidence is the segment's **margin** when known: the probability of its category
   minus that of the runner-up category, for the query that gave it its score (stored on the
   result by the classification that made it, :attr:`PanopticResult.margins`). The margin is at
   most the score, and it is small both when the score is low and when two categories are close.
   Without a margin (edited, imported or re-scored segments) the evidence is the **score**; a
   segment without a score either (e.g. ground truth read from a file) has evidence 1.
3. **Tiny** segments are suspect too (fragments, specks): the evidence is multiplied by
   ``min(1, area / tiny_area)``, where ``tiny_area`` defaults to 0.1 % of the plane's pixels
   (at least 16). A segment half that size counts half as sure.

``reviewed`` is a column of the segments table: a person marked the segment checked, or edited it
(an edited segment always counts as reviewed; see :func:`napari_odise.result.segments_table`).
The queue proper is the unreviewed segments in this order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from napari_odise.result import UNASSIGNED, PanopticResult

TINY_FRACTION = 0.001  # of the plane's pixels
MIN_TINY_AREA = 16


def tiny_area(plane_pixels: int) -> float:
    """The area below which a segment's evidence is scaled down (see the module notes)."""
    return max(float(MIN_TINY_AREA), TINY_FRACTION * plane_pixels)


def category_margins(class_logprobs, queries: Sequence[Sequence[int]]) -> list[float]:
    """Per segment (its model queries), best minus second-best category probability of the query
    whose best category is most probable (the one that gives the segment its score).

    ``class_logprobs``: (Q, K + 1) log class probabilities, last column "no object", as the
    panoptic merge reads them; probabilities are the softmax over all K + 1 columns, the same the
    segment's score is. One category only: the runner-up has probability 0."""
    logprobs = np.asarray(class_logprobs, dtype=np.float64)
    shifted = np.exp(logprobs - logprobs.max(axis=-1, keepdims=True))
    probabilities = (shifted / shifted.sum(axis=-1, keepdims=True))[:, :-1]
    if probabilities.shape[1] == 1:
        top = np.concatenate([probabilities, np.zeros_like(probabilities)], axis=1)
    else:
        top = -np.partition(-probabilities, 1, axis=1)[:, :2]
    margins = []
    for segment_queries in queries:
        chosen = list(segment_queries)
        if not chosen:
            margins.append(float("nan"))
            continue
        best = chosen[int(np.argmax(top[chosen, 0]))]
        margins.append(float(top[best, 0] - top[best, 1]))
    return margins


def confidence(
    segments: pd.DataFrame, plane_pixels: int, margins: Mapping[int, float] | None = None,
    small: float | None = None,
) -> np.ndarray:
    """The confidence of each row of a segments table (see the module notes); ``small`` overrides
    :func:`tiny_area`."""
    margins = margins or {}
    ids = segments["id"].to_numpy()
    scores = segments["score"].to_numpy(dtype=np.float64)
    known = np.array([margins.get(int(i), np.nan) for i in ids], dtype=np.float64)
    evidence = np.where(np.isnan(known), scores, known)
    evidence = np.clip(np.where(np.isnan(evidence), 1.0, evidence), 0.0, 1.0)
    limit = tiny_area(plane_pixels) if small is None else float(small)
    size = np.minimum(1.0, segments["area"].to_numpy(dtype=np.float64) / limit)
    evidence = evidence * size
    return np.where(segments["category_id"].to_numpy() == UNASSIGNED, 0.0, evidence)


def review_order(
    segments: pd.DataFrame, plane_pixels: int, margins: Mapping[int, float] | None = None,
    small: float | None = None,
) -> list[int]:
    """Every segment id of the table, least confident first, ties by id (reviewed ones included:
    a queue position is defined for each segment, so 'next' works from a reviewed one too)."""
    ids = segments["id"].to_numpy(dtype=np.int64)
    sure = confidence(segments, plane_pixels, margins, small)
    return [int(i) for i in ids[np.lexsort((ids, sure))]]


def result_order(result: PanopticResult) -> list[int]:
    """:func:`review_order` of a result (its margins, its plane size)."""
    return review_order(result.segments, result.label_map.size, result.margins)


def reviewed_ids(segments: pd.DataFrame) -> set[int]:
    """Ids a person marked reviewed or edited."""
    done = segments["reviewed"].to_numpy(dtype=bool) | (segments["source"] == "edited").to_numpy()
    return {int(i) for i in segments["id"].to_numpy()[done]}


def review_queue(result: PanopticResult) -> list[int]:
    """The unreviewed segments of a result, in review order."""
    done = reviewed_ids(result.segments)
    return [i for i in result_order(result) if i not in done]


def progress(segments: pd.DataFrame) -> tuple[int, int]:
    """(reviewed, all) segments of a table."""
    return len(reviewed_ids(segments)), len(segments)


def step(
    order: Sequence[int], done: Iterable[int], current: int | None, forward: bool = True
) -> int | None:
    """The next (or previous) unreviewed id after ``current`` in ``order``, wrapping around; from
    None or an id not in the order, the first (or last) unreviewed one. None when all are reviewed."""
    done = set(done)
    todo = [i for i in order if i not in done]
    if not todo:
        return None
    if current not in order:
        return todo[0] if forward else todo[-1]
    position = order.index(current)
    count = len(order)
    for offset in range(1, count + 1):
        candidate = order[(position + offset) % count if forward else (position - offset) % count]
        if candidate not in done:
            return candidate
    return None


def mark_reviewed(result: PanopticResult, ids: Iterable[int], reviewed: bool = True) -> PanopticResult:
    """A copy of ``result`` with segments marked reviewed (or not; an edited segment stays
    reviewed). Pixels and everything else are unchanged."""
    ids = [int(i) for i in ids]
    unknown = set(ids) - set(result.segments["id"].tolist())
    if unknown:
        raise ValueError(f"no segments with ids {sorted(unknown)}")
    marked = result.copy()
    table = marked.segments
    chosen = table["id"].isin(ids).to_numpy()
    flags = table["reviewed"].to_numpy(dtype=bool, copy=True)
    flags[chosen] = reviewed
    table["reviewed"] = flags | (table["source"] == "edited").to_numpy()
    marked.validate()
    return marked
