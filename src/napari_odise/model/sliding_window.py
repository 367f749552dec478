"""Sliding-window backbone: square crops through the diffusion model, projected and stitched.

For a padded image of H x W, crops have side ``min(crop_size, H, W)`` and stride equal to their
side; the last crop in each direction is shifted back to end at the border (so crops may
overlap). Each crop is resized (bicubic) to ``crop_size``, its features are projected, resized to
the crop's own grid, and the per-stride sums are averaged where crops overlap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .bottleneck import Bottleneck
from .config import HeadConfig
from .diffusion_features import Tap


@dataclass(frozen=True)
class CropBox:
    y1: int
    y2: int
    x1: int
    x2: int


def crop_boxes(height: int, width: int, crop_size: int) -> tuple[int, list[CropBox]]:
    """(crop side, boxes) exactly as ODISE's slide inference lays them out."""
    side = min(crop_size, height, width)
    if side <= 0:
        raise ValueError(f"cannot crop an image of {height}x{width}")
    h_grids = max(height - side + side - 1, 0) // side + 1
    w_grids = max(width - side + side - 1, 0) // side + 1
    boxes = []
    for hi in range(h_grids):
        for wi in range(w_grids):
            y2 = min(hi * side + side, height)
            x2 = min(wi * side + side, width)
            boxes.append(CropBox(max(y2 - side, 0), y2, max(x2 - side, 0), x2))
    return side, boxes


@dataclass(frozen=True)
class StrideGroup:
    name: str  # "s2".."s5"
    stride: int
    members: tuple[int, ...]  # tap indices summed into this output


def stride_groups(taps: list[Tap], min_stride: int, max_stride: int) -> list[StrideGroup]:
    """Group taps by clamped stride, smallest stride first (ODISE: s2=[0,7], s3=[1,5,6], s4=[4], s5=[2,3])."""
    by_stride: dict[int, list[int]] = {}
    for i, tap in enumerate(taps):
        stride = min(max(tap.stride, min_stride), max_stride)
        by_stride.setdefault(stride, []).append(i)
    return [
        StrideGroup(f"s{int(math.log2(s))}", s, tuple(members))
        for s, members in sorted(by_stride.items())
    ]


class FeatureProjector(nn.Module):
    """One bottleneck block per tapped feature, then a sum per stride group."""

    def __init__(self, taps: list[Tap], head: HeadConfig, min_stride: int, max_stride: int):
        super().__init__()
        self.groups = stride_groups(taps, min_stride, max_stride)
        self.projections = nn.ModuleList(
            Bottleneck(t.channels, head.bottleneck_dim, head.projection_dim, head.norm_groups) for t in taps
        )
        self.out_channels = head.projection_dim

    def forward(self, features: list[torch.Tensor], crop_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        out = {}
        for group in self.groups:
            size = (crop_hw[0] // group.stride, crop_hw[1] // group.stride)
            total = None
            for idx in group.members:
                feat = F.interpolate(features[idx], size=size, mode="nearest")
                projected = self.projections[idx](feat.to(self.projections[idx].conv1.weight.dtype))
                total = projected if total is None else total + projected
            out[group.name] = total
        return out


def slide(
    images: torch.Tensor,
    crop_size: int,
    groups: list[StrideGroup],
    channels: int,
    run_crops: Callable[[torch.Tensor, tuple[int, int]], dict[str, torch.Tensor]],
    batch_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Run ``run_crops`` over all crops of ``images`` (B, 3, H, W) and average overlaps.

    ``run_crops(crops, crop_hw)`` gets crops resized to ``crop_size`` and must return, per group,
    features of shape (N, channels, crop_h / stride, crop_w / stride).
    """
    b, _, height, width = images.shape
    side, boxes = crop_boxes(height, width, crop_size)
    out = {
        g.name: images.new_zeros((b, channels, height // g.stride, width // g.stride)) for g in groups
    }
    count = {g.name: images.new_zeros((1, 1, height // g.stride, width // g.stride)) for g in groups}
    stride = {g.name: g.stride for g in groups}
    crops = torch.stack([images[:, :, c.y1 : c.y2, c.x1 : c.x2] for c in boxes], dim=1)
    crops = crops.flatten(0, 1)  # (B * n_crops, 3, side, side), image-major
    n_crops = len(boxes)
    done = 0
    for start in range(0, crops.shape[0], batch_size):
        chunk = crops[start : start + batch_size]
        if side != crop_size:
            chunk = F.interpolate(
                chunk, size=(crop_size, crop_size), mode="bicubic", align_corners=False, antialias=False
            )
        feats = run_crops(chunk, (side, side))
        for j in range(chunk.shape[0]):
            image_index, box = divmod(start + j, n_crops)
            c = boxes[box]
            for name, value in feats.items():
                s = stride[name]
                region = (slice(c.y1 // s, c.y2 // s), slice(c.x1 // s, c.x2 // s))
                out[name][image_index, :, region[0], region[1]] += value[j].to(out[name].dtype)
                if image_index == 0:
                    count[name][0, 0, region[0], region[1]] += 1
        done += chunk.shape[0]
        if progress is not None:
            progress(done, crops.shape[0])
    return {name: out[name] / count[name] for name in out}
