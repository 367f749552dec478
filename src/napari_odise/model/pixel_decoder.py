"""Mask2Former's multi-scale deformable-attention pixel decoder.

The three coarsest backbone maps (s3, s4, s5) are projected to ``conv_dim`` channels, refined
together by deformable self-attention encoder layers, and an FPN step adds the finest map (s2) to
give stride-4 mask features. Returns (mask features, [s5, s4, s3] multi-scale features).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from .deform_attn import MSDeformAttn
from .layers import Conv2dNorm, group_norm
from .position_encoding import sine_position_encoding


class DeformableEncoderLayer(nn.Module):
    def __init__(self, d_model: int, d_ffn: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes):
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, spatial_shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class DeformableEncoder(nn.Module):
    def __init__(self, layer: DeformableEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    @staticmethod
    def reference_points(spatial_shapes, device) -> torch.Tensor:
        """(1, S, L, 2): every pixel centre of every level, normalised to [0, 1], repeated per level."""
        refs = []
        for h, w in spatial_shapes:
            ys, xs = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device) / h,
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device) / w,
                indexing="ij",
            )
            refs.append(torch.stack((xs.reshape(-1), ys.reshape(-1)), -1))
        ref = torch.cat(refs, 0)[None]
        return ref[:, :, None].expand(-1, -1, len(spatial_shapes), -1)

    def forward(self, src, pos, spatial_shapes):
        ref = self.reference_points(spatial_shapes, src.device).to(src.dtype)
        ref = ref.expand(src.shape[0], -1, -1, -1)
        for layer in self.layers:
            src = layer(src, pos, ref, spatial_shapes)
        return src


class DeformableTransformer(nn.Module):
    """Holds the encoder and the per-level embedding (checkpoint names: ``transformer.*``)."""

    def __init__(self, d_model, n_heads, num_layers, d_ffn, n_levels, n_points):
        super().__init__()
        layer = DeformableEncoderLayer(d_model, d_ffn, n_levels, n_heads, n_points)
        self.encoder = DeformableEncoder(layer, num_layers)
        self.level_embed = nn.Parameter(torch.empty(n_levels, d_model))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: list[torch.Tensor], pos: list[torch.Tensor]):
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos_flat = torch.cat(
            [p.flatten(2).transpose(1, 2) + self.level_embed[i].view(1, 1, -1) for i, p in enumerate(pos)], 1
        )
        memory = self.encoder(flat, pos_flat, shapes)
        return memory, shapes


class PixelDecoder(nn.Module):
    def __init__(
        self,
        in_channels: dict[str, int],
        strides: dict[str, int],
        transformer_features: tuple[str, ...],
        conv_dim: int,
        mask_dim: int,
        norm_groups: int,
        encoder_layers: int,
        encoder_heads: int,
        encoder_ffn: int,
        encoder_points: int,
        common_stride: int = 4,
    ):
        super().__init__()
        ordered = sorted(in_channels, key=lambda k: strides[k])  # fine -> coarse
        self.in_features = ordered
        self.transformer_features = sorted(transformer_features, key=lambda k: strides[k])
        n_levels = len(self.transformer_features)
        # input_proj[0] is the coarsest level (the official order)
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[k], conv_dim, 1), group_norm(norm_groups, conv_dim))
            for k in reversed(self.transformer_features)
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        self.transformer = DeformableTransformer(
            conv_dim, encoder_heads, encoder_layers, encoder_ffn, n_levels, encoder_points
        )
        self.conv_dim = conv_dim
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 1)
        _c2_xavier_fill(self.mask_features)
        finest_transformer_stride = strides[self.transformer_features[0]]
        num_fpn = 0
        while finest_transformer_stride > common_stride * 2**num_fpn:
            num_fpn += 1
        self.fpn_features = ordered[:num_fpn]
        for i, key in enumerate(self.fpn_features):
            adapter = Conv2dNorm(in_channels[key], conv_dim, 1, bias=False, norm=group_norm(norm_groups, conv_dim))
            layer = Conv2dNorm(
                conv_dim, conv_dim, 3, padding=1, bias=False, norm=group_norm(norm_groups, conv_dim), activation=F.relu
            )
            _c2_xavier_fill(adapter)
            _c2_xavier_fill(layer)
            self.add_module(f"adapter_{i + 1}", adapter)
            self.add_module(f"layer_{i + 1}", layer)

    def forward(self, features: dict[str, torch.Tensor]):
        srcs, pos = [], []
        for i, key in enumerate(reversed(self.transformer_features)):
            x = features[key].float()
            srcs.append(self.input_proj[i](x))
            b, _, h, w = x.shape
            pos.append(sine_position_encoding(b, h, w, self.conv_dim // 2, x.device).to(x.dtype))
        memory, shapes = self.transformer(srcs, pos)
        b = memory.shape[0]
        outs = []
        start = 0
        for h, w in shapes:
            outs.append(memory[:, start : start + h * w].transpose(1, 2).reshape(b, -1, h, w))
            start += h * w
        # FPN top-down from the finest transformer level
        for i in reversed(range(len(self.fpn_features))):
            key = self.fpn_features[i]
            lateral = getattr(self, f"adapter_{i + 1}")(features[key].float())
            y = lateral + F.interpolate(outs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(getattr(self, f"layer_{i + 1}")(y))
        return self.mask_features(outs[-1]), outs[:3]


def _c2_xavier_fill(conv: nn.Conv2d):
    """Caffe2's XavierFill, as detectron2 initialises these convolutions."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
