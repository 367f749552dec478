"""The per-feature projection: one ResNet bottleneck block with GroupNorm (detectron2 layout).

Each diffusion feature map (512..2560 channels) is projected to ``projection_dim`` channels by its
own block: 1x1 -> 3x3 -> 1x1 convolutions (no bias, GroupNorm after each), plus a 1x1 shortcut
when the channel count changes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import Conv2dNorm, group_norm


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, bottleneck_channels: int, out_channels: int, groups: int):
        super().__init__()
        if in_channels != out_channels:
            self.shortcut = Conv2dNorm(
                in_channels, out_channels, 1, bias=False, norm=group_norm(groups, out_channels)
            )
        else:
            self.shortcut = None
        self.conv1 = Conv2dNorm(
            in_channels, bottleneck_channels, 1, bias=False, norm=group_norm(groups, bottleneck_channels)
        )
        self.conv2 = Conv2dNorm(
            bottleneck_channels,
            bottleneck_channels,
            3,
            padding=1,
            bias=False,
            norm=group_norm(groups, bottleneck_channels),
        )
        self.conv3 = Conv2dNorm(
            bottleneck_channels, out_channels, 1, bias=False, norm=group_norm(groups, out_channels)
        )
        for conv in (self.conv1, self.conv2, self.conv3, self.shortcut):
            if conv is not None:
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)
