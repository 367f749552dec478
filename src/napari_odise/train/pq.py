"""Panoptic quality of fine-tuning's validation, summed over held-out images.

The counting is :mod:`napari_odise.quality`'s (panopticapi's rules: a predicted and a ground-truth
segment of the same category match when their IoU > 0.5; a predicted segment mostly on unlabeled
ground truth is ignored, not a false positive), with the prediction in the model's place and the
dataset's labels in the corrected one. PQ is the mean over the categories counted.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from napari_odise.quality import ModelOutput, Quality, compare


class PQStats:
    def __init__(self):
        self.quality = Quality()

    def add(self, pred_map, pred_categories: dict[int, int], gt_map, gt_categories: dict[int, int]) -> None:
        """Accumulate one image: label maps + {segment id: category id} for each."""
        pred_map, gt_map = np.asarray(pred_map), np.asarray(gt_map)
        if pred_map.shape != gt_map.shape:
            raise ValueError(f"prediction {pred_map.shape} and ground truth {gt_map.shape} differ in size")
        prediction = ModelOutput(pred_map, dict(pred_categories), {})
        self.quality = self.quality + compare(gt_map, gt_categories, prediction)

    @property
    def tp(self) -> dict[int, int]:
        """Matches per category."""
        return {c: counts.tp for c, counts in self.quality.categories.items()}

    def per_category(self) -> dict[int, float]:
        return {c: counts.pq for c, counts in self.quality.categories.items() if counts.counted}

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
