"""Mask losses on sampled points (Mask2Former): cheaper than full masks and resolution-free.

Points are normalised (x, y) coordinates in [0, 1]; values are read with bilinear interpolation.
For the loss, most points are the prediction's most uncertain ones (logits near 0), the rest are
uniform: this is "importance sampling" of PointRend.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Values of ``maps`` (N, C, H, W) at ``coords`` (N, P, 2) in [0, 1] -> (N, C, P)."""
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # (N, P, 1, 2)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(3)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Higher where the logit is closer to 0 (the prediction is least sure)."""
    return -logits.abs()


def uncertain_point_coords(
    logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(N, num_points, 2) coordinates for mask logits (N, 1, H, W).

    Draw ``num_points * oversample_ratio`` uniform points, keep the ``importance_sample_ratio``
    share with the highest uncertainty, fill the rest with fresh uniform points.
    """
    n = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    coords = torch.rand(n, num_sampled, 2, device=logits.device, generator=generator)
    scores = uncertainty(point_sample(logits, coords))[:, 0]  # (N, num_sampled)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    index = scores.topk(num_uncertain, dim=1).indices
    chosen = torch.gather(coords, 1, index[..., None].expand(-1, -1, 2))
    if num_random > 0:
        extra = torch.rand(n, num_random, 2, device=logits.device, generator=generator)
        chosen = torch.cat([chosen, extra], dim=1)
    return chosen
