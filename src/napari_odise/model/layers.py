"""Small building blocks shared by the head (names follow the official checkpoint's layout)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Conv2dNorm(nn.Conv2d):
    """A convolution with an optional ``norm`` submodule and activation, applied in that order.

    The official checkpoint stores such layers as ``<name>.weight`` + ``<name>.norm.weight``.
    """

    def __init__(self, *args, norm: nn.Module | None = None, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class MLP(nn.Module):
    """Linear layers with ReLU between them (Mask2Former's mask-embedding MLP)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


class PositionalLinear(nn.Module):
    """Linear map of one vector to a sequence: ``linear(x)[:, None] + positional_embedding``.

    The implicit captioner uses it to turn a CLIP image embedding into a 77-token UNet context.
    """

    def __init__(self, in_features: int, out_features: int, seq_len: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.positional_embedding = nn.Parameter(torch.zeros(1, seq_len, out_features))
        nn.init.trunc_normal_(self.positional_embedding, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unsqueeze(1) + self.positional_embedding


def group_norm(groups: int, channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)
