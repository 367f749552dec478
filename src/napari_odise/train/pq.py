"""Panoptic quality (Kirillov et al.), per category and averaged, for label maps with categories.

A predicted and a ground-truth segment of the same category match when their IoU > 0.5 (unique by
construction). PQ_c = sum of matched IoUs / (TP + FP/2 + FN/2); PQ is the mean over categories that
appear in the ground truth or the predictions. Unlabeled ground-truth pixels (id 0) are void:
a predicted segment mostly (> 50 %) in void is not counted as a false positive, as in COCO's
evaluation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class PQStats:
    iou: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    tp: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    fp: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    fn: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, pred_map, pred_categories: dict[int, int], gt_map, gt_categories: dict[int, int]) -> None:
        """Accumulate one image: label maps + {segment id: category id} for each."""
        pred_map = np.asarray(pred_map, dtype=np.int64)
        gt_map = np.asarray(gt_map, dtype=np.int64)
        if pred_map.shape != gt_map.shape:
            raise ValueError(f"prediction {pred_map.shape} and ground truth {gt_map.shape} differ in size")
        pairs, counts = np.unique(np.stack([gt_map.ravel(), pred_map.ravel()]), axis=1, return_counts=True)
        overlap = {(int(g), int(p)): int(c) for (g, p), c in zip(pairs.T, counts)}
        gt_area = defaultdict(int)
        pred_area = defaultdict(int)
        for (g, p), c in overlap.items():
            gt_area[g] += c
            pred_area[p] += c
        matched_gt, matched_pred = set(), set()
        for (g, p), inter in overlap.items():
            if g == 0 or p == 0 or gt_categories.get(g) != pred_categories.get(p):
                continue
            union = gt_area[g] + pred_area[p] - inter - overlap.get((0, p), 0)
            iou = inter / union
            if iou > 0.5:
                category = gt_categories[g]
                self.tp[category] += 1
                self.iou[category] += iou
                matched_gt.add(g)
                matched_pred.add(p)
        for g, category in gt_categories.items():
            if g not in matched_gt and gt_area.get(g, 0) > 0:
                self.fn[category] += 1
        for p, category in pred_categories.items():
            if p in matched_pred or pred_area.get(p, 0) == 0:
                continue
            if overlap.get((0, p), 0) / pred_area[p] > 0.5:
                continue  # mostly on unlabeled ground truth: ignored
            self.fp[category] += 1

    def per_category(self) -> dict[int, float]:
        out = {}
        for c in set(self.tp) | set(self.fp) | set(self.fn):
            denominator = self.tp[c] + 0.5 * self.fp[c] + 0.5 * self.fn[c]
            if denominator > 0:
                out[c] = self.iou[c] / denominator
        return out

    def pq(self, categories: Iterable[int] | None = None) -> float:
        """Mean PQ over the categories seen, or over those of ``categories`` (e.g. the things:
        stuff alone can carry the overall PQ)."""
        values = self.per_category()
        if categories is not None:
            wanted = set(categories)
            values = {c: v for c, v in values.items() if c in wanted}
        return float(np.mean(list(values.values()))) if values else 0.0


def panoptic_quality(pairs) -> float:
    """PQ over (pred_map, pred_categories, gt_map, gt_categories) tuples."""
    stats = PQStats()
    for item in pairs:
        stats.add(*item)
    return stats.pq()
