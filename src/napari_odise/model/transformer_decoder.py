"""Mask2Former's masked-attention transformer decoder with ODISE's pooled mask embedding.

Learned queries attend, layer by layer, to one scale of the pixel decoder's features at a time
(s5, s4, s3, s5, ...), each query only where its previous mask prediction is foreground (masked
attention). After the learned queries and after every layer a prediction head gives mask logits
(mask embedding x mask features) and ODISE's open-vocabulary embedding: mask features pooled under
the query's hard mask, projected, added to the query, then an MLP.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .layers import MLP
from .position_encoding import sine_position_encoding


class SelfAttentionLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)
        _xavier(self)

    def forward(self, tgt, query_pos):
        q = k = tgt + query_pos
        return self.norm(tgt + self.self_attn(q, k, value=tgt, need_weights=False)[0])


class CrossAttentionLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)
        _xavier(self)

    def forward(self, tgt, memory, memory_mask, pos, query_pos):
        out = self.multihead_attn(
            query=tgt + query_pos, key=memory + pos, value=memory, attn_mask=memory_mask, need_weights=False
        )[0]
        return self.norm(tgt + out)


class FFNLayer(nn.Module):
    def __init__(self, d_model: int, dim_feedforward: int):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        _xavier(self)

    def forward(self, tgt):
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt))))


def _xavier(module: nn.Module):
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


def hard_mask_pooling(features: torch.Tensor, mask_logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Average of ``features`` (B, C, H, W) under each query's mask sigmoid > threshold: (B, Q, C)."""
    mask = (mask_logits.detach().sigmoid() > threshold).to(features.dtype)
    denom = mask.sum(dim=(-1, -2), keepdim=True) + 1e-8
    return torch.einsum("bchw,bqhw->bqc", features, mask / denom)


class PooledMaskEmbed(nn.Module):
    """ODISE's open-vocabulary query embedding and its learned temperature."""

    def __init__(self, hidden_dim: int, mask_dim: int, projection_dim: int, temperature: float = 0.07):
        super().__init__()
        self.pool_proj = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, hidden_dim))
        self.mask_embed = nn.Sequential(nn.LayerNorm(mask_dim), MLP(mask_dim, hidden_dim, projection_dim, 3))
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / temperature))))

    def forward(self, decoder_output, mask_features, mask_logits) -> torch.Tensor:
        pooled = self.pool_proj(hard_mask_pooling(mask_features, mask_logits))
        return self.mask_embed(pooled + decoder_output)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=100)


class MaskedTransformerDecoder(nn.Module):
    def __init__(
        self,
        hidden_dim: int,
        mask_dim: int,
        num_queries: int,
        nheads: int,
        dim_feedforward: int,
        dec_layers: int,
        num_feature_levels: int = 3,
        num_classes: int | None = None,
        temperature: float = 0.07,
    ):
        """``num_classes`` adds Mask2Former's linear class head (caption model: 1 -> 2 logits)."""
        super().__init__()
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.num_feature_levels = num_feature_levels
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer(hidden_dim, dim_feedforward) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1) if num_classes is not None else None
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.post_mask_embed = PooledMaskEmbed(hidden_dim, mask_dim, mask_dim, temperature)
        self.hidden_dim = hidden_dim

    def prediction_heads(self, output, mask_features, attn_size):
        """Per-query predictions from the decoder state (Q, B, C) and the next layer's attention mask."""
        decoded = self.decoder_norm(output).transpose(0, 1)  # (B, Q, C)
        mask_logits = torch.einsum("bqc,bchw->bqhw", self.mask_embed(decoded), mask_features)
        embed = self.post_mask_embed(decoded, mask_features, mask_logits)
        pred = {"mask_logits": mask_logits, "mask_embed": embed}
        if self.class_embed is not None:
            pred["class_logits"] = self.class_embed(decoded)
        attn = F.interpolate(mask_logits, size=attn_size, mode="bilinear", align_corners=False)
        attn_mask = attn.sigmoid().flatten(2).unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1) < 0.5
        return pred, attn_mask.detach()

    def forward(self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor, all_layers: bool = False):
        """Predictions of the last layer (dict), or of all layers when ``all_layers`` (deep supervision)."""
        srcs, pos, sizes = [], [], []
        for i, x in enumerate(multi_scale):
            b, _, h, w = x.shape
            sizes.append((h, w))
            pos.append(sine_position_encoding(b, h, w, self.hidden_dim // 2, x.device).to(x.dtype).flatten(2).permute(2, 0, 1))
            srcs.append((x.flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1))
        b = srcs[0].shape[1]
        query_embed = self.query_embed.weight.unsqueeze(1).repeat(1, b, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, b, 1)
        predictions = []
        pred, attn_mask = self.prediction_heads(output, mask_features, sizes[0])
        predictions.append(pred)
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            # a query whose mask covers nothing may attend everywhere (avoids empty softmax rows)
            attn_mask = attn_mask & ~attn_mask.all(-1, keepdim=True)
            output = self.transformer_cross_attention_layers[i](output, srcs[level], attn_mask, pos[level], query_embed)
            output = self.transformer_self_attention_layers[i](output, query_embed)
            output = self.transformer_ffn_layers[i](output)
            pred, attn_mask = self.prediction_heads(output, mask_features, sizes[(i + 1) % self.num_feature_levels])
            predictions.append(pred)
        out = dict(predictions[-1])
        out["logit_scale"] = self.post_mask_embed.scale()
        if all_layers:
            out["aux"] = predictions[:-1]
        return out

