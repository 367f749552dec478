"""Normalised 2-D sine position encoding (DETR / Mask2Former), for maps without padding masks."""

from __future__ import annotations

import math

import torch


def sine_position_encoding(
    batch: int, height: int, width: int, num_feats: int, device, temperature: float = 10000.0
) -> torch.Tensor:
    """(B, 2 * num_feats, H, W): y features then x features, coordinates scaled to (0, 2*pi]."""
    eps = 1e-6
    scale = 2 * math.pi
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y = y / (height + eps) * scale
    x = x / (width + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos_y = y[:, None] / dim_t  # (H, F)
    pos_x = x[:, None] / dim_t  # (W, F)
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
    pos = torch.cat(
        (pos_y[:, None, :].expand(height, width, -1), pos_x[None, :, :].expand(height, width, -1)), dim=2
    )
    return pos.permute(2, 0, 1).unsqueeze(0).expand(batch, -1, -1, -1)
