"""Mask2Former's training objective as ODISE uses it with category labels.

For every decoder layer's predictions (deep supervision): Hungarian matching, then
- cross-entropy over the K + 1 open-vocabulary logits, "no object" weighted ``no_object_weight``;
- sigmoid BCE and dice on points sampled by uncertainty (importance sampling), for matched queries,
normalised by the number of ground-truth segments. Official weights: class 2, mask 5, dice 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .matcher import hungarian_match
from .point_sampling import point_sample, uncertain_point_coords


@dataclass
class LossWeights:
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75


def sigmoid_bce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def class_loss(class_logits: torch.Tensor, matches, target_labels, no_object_weight: float) -> torch.Tensor:
    """CE over (B, Q, K + 1); unmatched queries must say "no object" (the last class)."""
    b, q, k1 = class_logits.shape
    target = torch.full((b, q), k1 - 1, dtype=torch.int64, device=class_logits.device)
    for i, (rows, cols) in enumerate(matches):
        target[i, rows] = target_labels[i][cols].to(class_logits.device)
    weight = torch.ones(k1, device=class_logits.device)
    weight[-1] = no_object_weight
    return F.cross_entropy(class_logits.float().transpose(1, 2), target, weight)


def mask_losses(mask_logits, matches, target_masks, num_masks: float, w: LossWeights, generator=None):
    src = torch.cat([mask_logits[i, rows] for i, (rows, _) in enumerate(matches)])
    tgt = torch.cat([target_masks[i][cols].to(src) for i, (_, cols) in enumerate(matches)])
    if src.shape[0] == 0:
        zero = mask_logits.sum() * 0.0
        return zero, zero
    src, tgt = src[:, None].float(), tgt[:, None]
    with torch.no_grad():
        coords = uncertain_point_coords(src, w.num_points, w.oversample_ratio, w.importance_sample_ratio, generator)
        labels = point_sample(tgt, coords)[:, 0]
    logits = point_sample(src, coords)[:, 0]
    return sigmoid_bce_loss(logits, labels, num_masks), dice_loss(logits, labels, num_masks)


def set_criterion(
    predictions: list[dict],
    target_labels: list[torch.Tensor],
    target_masks: list[torch.Tensor],
    weights: LossWeights | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted losses of every layer: keys loss_ce, loss_mask, loss_dice (last layer) and _<i> (aux).

    Each prediction dict has "class_logits" (B, Q, K + 1) and "mask_logits" (B, Q, h, w); targets
    per image: labels (T,) as indices 0..K-1 and masks (T, H, W) in {0, 1}.
    """
    w = weights or LossWeights()
    num_masks = max(float(sum(len(t) for t in target_labels)), 1.0)
    losses = {}
    for layer, pred in enumerate(predictions):
        matches = [
            hungarian_match(
                pred["class_logits"][i].detach(),
                pred["mask_logits"][i].detach(),
                target_labels[i],
                target_masks[i],
                w.class_weight,
                w.mask_weight,
                w.dice_weight,
                w.num_points,
                generator,
            )
            for i in range(len(target_labels))
        ]
        suffix = "" if layer == len(predictions) - 1 else f"_{layer}"
        ce = class_loss(pred["class_logits"], matches, target_labels, w.no_object_weight)
        bce, dice = mask_losses(pred["mask_logits"], matches, target_masks, num_masks, w, generator)
        losses[f"loss_ce{suffix}"] = w.class_weight * ce
        losses[f"loss_mask{suffix}"] = w.mask_weight * bce
        losses[f"loss_dice{suffix}"] = w.dice_weight * dice
    return losses
