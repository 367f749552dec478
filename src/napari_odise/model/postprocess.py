"""From per-query class scores and mask logits to panoptic, semantic and instance outputs.

Masks are upsampled exactly as the official code does (bilinear to the padded input size, crop to
the image, bilinear to the output size), but a few queries at a time, so that memory stays at a
few full-size maps even for large images and vocabularies. The rules are Mask2Former's:

- panoptic: drop queries whose best class is "no object" or whose score is not above
  ``object_mask_threshold``; each pixel goes to the query with the highest score * sigmoid(mask)
  (first query on ties); a query keeps its pixels with sigmoid >= 0.5 only if they are at least
  ``overlap_threshold`` of its own sigmoid >= 0.5 area; stuff of one category is one segment.
- semantic: argmax over categories of sum_q softmax(classes)_q * sigmoid(mask_q).
- instances: the top-k (query, category) pairs over thing categories; mask = logit > 0; score =
  class score x mean sigmoid inside the mask.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from .ownership import Ownership, fused_ownership, ownership_from_maps


@dataclass(frozen=True)
class MaskGeometry:
    """Sizes a mask goes through: stride-4 logits of the padded input -> original image."""

    padded_size: tuple[int, int]
    input_size: tuple[int, int]  # the resized image inside the padding
    output_size: tuple[int, int]  # the original image


def upsample_masks(mask_logits: torch.Tensor, geometry: MaskGeometry) -> torch.Tensor:
    """(N, h, w) mask logits -> (N, H_out, W_out) logits (official sem_seg_postprocess path)."""
    x = F.interpolate(mask_logits[None].float(), size=geometry.padded_size, mode="bilinear", align_corners=False)
    x = x[:, :, : geometry.input_size[0], : geometry.input_size[1]]
    x = F.interpolate(x, size=geometry.output_size, mode="bilinear", align_corners=False)
    return x[0]


class QueryMasks:
    """The queries' sigmoid masks at the output size, computed a few at a time or kept in memory.

    Masks never depend on the vocabulary: after ``materialize()`` a re-classification only
    re-weights them (no interpolation). Values are identical either way (same float32 ops).
    """

    def __init__(self, mask_logits: torch.Tensor, geometry: MaskGeometry):
        self.mask_logits = mask_logits
        self.geometry = geometry
        self.dense: torch.Tensor | None = None
        self._own_areas: torch.Tensor | None = None

    @property
    def dense_bytes(self) -> int:
        """Memory of the kept masks: float32 probabilities."""
        h, w = self.geometry.output_size
        return 4 * self.mask_logits.shape[0] * h * w

    def materialize(self) -> torch.Tensor:
        if self.dense is None:
            queries = list(range(self.mask_logits.shape[0]))
            dense = torch.empty((len(queries), *self.geometry.output_size))
            for k, prob in self._compute(queries):
                dense[k] = prob
            self.dense = dense
        return self.dense

    def _compute(self, queries: list[int]) -> Iterator[tuple[int, torch.Tensor]]:
        chunk = _chunk_for(self.geometry)
        for start in range(0, len(queries), chunk):
            idx = queries[start : start + chunk]
            probs = upsample_masks(self.mask_logits[idx], self.geometry).sigmoid()
            for j in range(len(idx)):
                yield start + j, probs[j]

    def iter(self, queries: list[int]) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (position in ``queries``, sigmoid mask at output size)."""
        if self.dense is not None:
            for k, q in enumerate(queries):
                yield k, self.dense[q]
        else:
            yield from self._compute(queries)

    def own_areas(self) -> torch.Tensor:
        """Each query's sigmoid >= 0.5 pixel count (vocabulary independent: computed once)."""
        if self._own_areas is None:
            self._own_areas = (self.materialize() >= 0.5).flatten(1).sum(1)
        return self._own_areas

    def ownership(self, queries: list[int], scores: torch.Tensor) -> Ownership:
        """Which of ``queries`` owns each pixel (highest score * sigmoid, the first on ties)."""
        if self.dense is not None:
            return fused_ownership(self.dense, queries, scores, self.own_areas()[queries].tolist())
        best = torch.full(self.geometry.output_size, float("-inf"))
        owner = torch.zeros(self.geometry.output_size, dtype=torch.int64)
        original_area = []
        for k, prob in self._compute(queries):
            weighted = scores[k] * prob
            better = weighted > best
            best = torch.where(better, weighted, best)
            owner[better] = k
            original_area.append(int((prob >= 0.5).sum()))
        owner_foreground = torch.zeros(self.geometry.output_size, dtype=torch.bool)
        for k, prob in self._compute(queries):
            owner_foreground |= (owner == k) & (prob >= 0.5)
        return ownership_from_maps(owner, owner_foreground, original_area)


def as_query_masks(masks, geometry: MaskGeometry) -> QueryMasks:
    return masks if isinstance(masks, QueryMasks) else QueryMasks(masks, geometry)


def _chunk_for(geometry: MaskGeometry, budget_bytes: int = 256 * 2**20) -> int:
    h, w = geometry.output_size
    ph, pw = geometry.padded_size
    per_query = 4 * (h * w + ph * pw)
    return max(1, min(64, budget_bytes // max(per_query, 1)))


@dataclass
class Segment:
    id: int
    category_index: int  # index into the vocabulary (0..K-1)
    isthing: bool
    score: float  # best class probability of the (first) query
    queries: list[int] = field(default_factory=list)
    area: int = 0  # its pixels in the label map


def panoptic_inference(
    class_logprobs: torch.Tensor,
    mask_logits: torch.Tensor | QueryMasks,
    isthing: list[bool],
    geometry: MaskGeometry,
    overlap_threshold: float = 0.8,
    object_mask_threshold: float = 0.0,
) -> tuple[torch.Tensor, list[Segment]]:
    """Panoptic label map (int32, 0 = unlabeled) and its segments.

    Args:
        class_logprobs: (Q, K + 1) log class probabilities, last = no object.
        mask_logits: (Q, h, w) mask logits at stride 4 of the padded input, or their QueryMasks.
        isthing: per category (K).
    """
    masks = as_query_masks(mask_logits, geometry)
    num_classes = class_logprobs.shape[-1] - 1
    scores, labels = class_logprobs.float().softmax(-1).max(-1)
    keep = (labels != num_classes) & (scores > object_mask_threshold)
    kept = torch.nonzero(keep).flatten().tolist()
    if not kept:
        return torch.zeros(geometry.output_size, dtype=torch.int32), []
    owned = masks.ownership(kept, scores[kept])
    assigned_area, kept_area, original_area = owned.assigned_area, owned.kept_area, owned.original_area

    segments: list[Segment] = []
    stuff_segment: dict[int, Segment] = {}
    segment_of = torch.zeros(len(kept), dtype=torch.int32)  # per kept query; 0 = dropped
    for k, q in enumerate(kept):
        label = int(labels[q])
        if assigned_area[k] == 0 or original_area[k] == 0 or kept_area[k] == 0:
            continue
        if assigned_area[k] / original_area[k] < overlap_threshold:
            continue
        thing = bool(isthing[label])
        if not thing and label in stuff_segment:  # stuff of one category is one segment
            seg = stuff_segment[label]
            seg.queries.append(q)
            seg.score = max(seg.score, float(scores[q]))
            seg.area += kept_area[k]
        else:
            seg = Segment(len(segments) + 1, label, thing, float(scores[q]), [q], kept_area[k])
            segments.append(seg)
            if not thing:
                stuff_segment[label] = seg
        segment_of[k] = seg.id
    return owned.label_map(segment_of), segments


def semantic_inference(
    class_logprobs: torch.Tensor,
    mask_logits: torch.Tensor | QueryMasks,
    geometry: MaskGeometry,
    budget_bytes: int = 512 * 2**20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(category index map int64, its score) of argmax_c sum_q softmax(cls)_qc * sigmoid(mask_q)."""
    masks = as_query_masks(mask_logits, geometry)
    probs = class_logprobs.float().softmax(-1)[:, :-1]  # (Q, K)
    q_count, k_count = probs.shape
    h, w = geometry.output_size
    cat_chunk = max(1, min(k_count, budget_bytes // (4 * h * w)))
    best_score = torch.full((h, w), float("-inf"))
    best_class = torch.zeros((h, w), dtype=torch.int64)
    queries = list(range(q_count))
    for c0 in range(0, k_count, cat_chunk):
        c1 = min(k_count, c0 + cat_chunk)
        acc = torch.zeros((c1 - c0, h, w))
        for q, prob in masks.iter(queries):
            acc += probs[q, c0:c1, None, None] * prob
        score, cls = acc.max(0)
        better = score > best_score
        best_score = torch.where(better, score, best_score)
        best_class = torch.where(better, cls + c0, best_class)
    return best_class, best_score


@dataclass
class Instance:
    query: int
    category_index: int
    score: float
    mask: torch.Tensor  # bool (H, W)


def instance_inference(
    class_logprobs: torch.Tensor,
    mask_logits: torch.Tensor,
    isthing: list[bool],
    geometry: MaskGeometry,
    topk: int = 100,
) -> list[Instance]:
    """Top-k (query, thing category) pairs, sorted by score (the official order is unspecified)."""
    scores = class_logprobs.float().softmax(-1)[:, :-1]
    q_count, k_count = scores.shape
    top_scores, top_idx = scores.flatten().topk(min(topk, q_count * k_count), sorted=True)
    thing = torch.tensor(isthing, dtype=torch.bool)
    out = []
    for s, flat in zip(top_scores.tolist(), top_idx.tolist()):
        q, c = divmod(flat, k_count)
        if not thing[c]:
            continue
        logits = upsample_masks(mask_logits[q : q + 1], geometry)[0]
        mask = logits > 0
        mean_prob = float((logits.sigmoid() * mask).sum() / (mask.sum() + 1e-6))
        out.append(Instance(q, c, s * mean_prob, mask))
    return out
