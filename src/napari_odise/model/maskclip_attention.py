"""MaskCLIP's pass through CLIP's vision transformer, with scaled_dot_product_attention.

Tokens are [Q mask tokens, class token, P patches]. Nobody attends to a mask token, so in the
full (Q + 1 + P)-square attention their key columns are -inf for every query and add exactly
nothing (exp(-inf) = 0). Here each layer computes keys and values for the 1 + P class and patch
tokens only, every token queries them under an additive mask (B, 1, Q + 1 + P, 1 + P) that is
broadcast over the heads (not repeated per head), and the last layer computes only the mask
tokens, the one output MaskCLIP reads. Same numbers as open_clip's transformer with the full mask,
to float rounding; less work (no keys/values for the Q tokens, no Q-wide columns, a last layer
of Q tokens instead of Q + 1 + P).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def mask_token_bias(patch_blocked: torch.Tensor, dtype) -> torch.Tensor:
    """Additive mask (B, 1, Q + 1 + P, 1 + P): query rows over the class and patch key columns.

    Mask token q sees the class token and its unblocked patches (``patch_blocked`` (B, Q, P) is
    True where it may not look); class and patch tokens see each other as in a plain forward.
    """
    b, q, p = patch_blocked.shape
    bias = torch.zeros(b, 1, q + 1 + p, 1 + p, dtype=dtype, device=patch_blocked.device)
    bias[:, 0, :q, 1:].masked_fill_(patch_blocked, float("-inf"))
    return bias


def mask_token_pass(transformer, x: torch.Tensor, num_mask_tokens: int, bias: torch.Tensor) -> torch.Tensor:
    """open_clip's ``Transformer`` on ``x`` (B, Q + 1 + P, width), batch first; returns the Q mask
    tokens' outputs (B, Q, width)."""
    blocks = transformer.resblocks
    for i, block in enumerate(blocks):
        x = _block(block, x, num_mask_tokens, bias, last=i == len(blocks) - 1)
    return x


def _block(block, x: torch.Tensor, q: int, bias: torch.Tensor, last: bool) -> torch.Tensor:
    """One ``ResidualAttentionBlock``: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""
    attn = block.attn
    if not isinstance(attn, nn.MultiheadAttention) or not attn._qkv_same_embed_dim:
        raise TypeError("MaskCLIP expects open_clip's ResidualAttentionBlock (nn.MultiheadAttention, one in_proj)")
    h = block.ln_1(x)
    context = h[:, q:]  # class and patch tokens: the only ones anybody attends to
    if last:  # only the mask tokens' outputs are read after the last layer
        x, h, bias = x[:, :q], h[:, :q], bias[:, :, :q]
    width, heads = h.shape[-1], attn.num_heads
    weight, in_bias = attn.in_proj_weight, attn.in_proj_bias
    query = F.linear(h, weight[:width], in_bias[:width])
    key = F.linear(context, weight[width : 2 * width], in_bias[width : 2 * width])
    value = F.linear(context, weight[2 * width :], in_bias[2 * width :])

    def split(t):  # (B, N, width) -> (B, heads, N, width / heads)
        return t.unflatten(-1, (heads, -1)).transpose(1, 2)

    mask = bias if bias.dtype == query.dtype else bias.to(query.dtype)  # autocast: query in bf16/fp16
    out = F.scaled_dot_product_attention(split(query), split(key), split(value), attn_mask=mask)
    x = x + block.ls_1(attn.out_proj(out.transpose(1, 2).flatten(2)))
    return x + block.ls_2(block.mlp(block.ln_2(x)))
