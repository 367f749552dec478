"""Hungarian matching of predicted queries to ground-truth segments (Mask2Former).

Cost = class_weight * (-p(target class)) + mask_weight * sigmoid BCE + dice_weight * dice, with
the mask costs computed on the same random points for every pair; scipy solves the assignment.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional as F

from .errors import TrainingDivergedError
from .point_sampling import point_sample


def pairwise_sigmoid_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P) logits vs (T, P) binary targets -> (Q, T) mean BCE per pair."""
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P) logits vs (T, P) binary targets -> (Q, T) dice loss 1 - (2|X∩Y| + 1) / (|X| + |Y| + 1)."""
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


@torch.no_grad()
def hungarian_match(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    target_labels: torch.Tensor,
    target_masks: torch.Tensor,
    class_weight: float = 2.0,
    mask_weight: float = 5.0,
    dice_weight: float = 5.0,
    num_points: int = 12544,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(query indices, target indices) of one image's optimal assignment.

    Args:
        class_logits: (Q, K + 1); mask_logits: (Q, h, w); target_labels: (T,); target_masks: (T, H, W).
    """
    if target_labels.numel() == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty
    probs = class_logits.float().softmax(-1)
    cost_class = -probs[:, target_labels]
    coords = torch.rand(1, num_points, 2, device=mask_logits.device, generator=generator)
    out = point_sample(mask_logits[:, None].float(), coords.expand(mask_logits.shape[0], -1, -1))[:, 0]
    tgt = point_sample(target_masks[:, None].float(), coords.expand(target_masks.shape[0], -1, -1))[:, 0]
    cost = (
        mask_weight * pairwise_sigmoid_bce(out, tgt)
        + class_weight * cost_class
        + dice_weight * pairwise_dice(out, tgt)
    )
    if not torch.isfinite(cost).all():
        raise TrainingDivergedError("the model's outputs are not finite (training diverged): lower the learning rate")
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)
