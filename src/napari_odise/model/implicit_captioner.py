"""ODISE's implicit captioner: a CLIP image embedding turned into the UNet's conditioning.

The crop's CLIP embedding is projected to a 77-token sequence and added, gated by tanh of a learned
tensor (initialised at zero, so training starts from the unconditional model), to SD's text context
of the empty caption. A second projection, gated the same way, is added to the UNet's time
embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import PositionalLinear


class ImplicitCaptioner(nn.Module):
    def __init__(self, clip_dim: int, context_shape: tuple[int, int], time_embed_dim: int, num_timesteps: int = 1):
        super().__init__()
        seq_len, context_dim = context_shape
        self.context_proj = PositionalLinear(clip_dim, context_dim, seq_len)
        self.context_gate = nn.Parameter(torch.zeros(1, seq_len, context_dim))
        self.time_proj = PositionalLinear(clip_dim, time_embed_dim, num_timesteps)
        self.time_gate = nn.Parameter(torch.zeros(time_embed_dim))

    def forward(self, clip_embedding: torch.Tensor, empty_context: torch.Tensor):
        """(UNet context (B, 77, D), time-embedding addition (B, T)) for step 0.

        Args:
            clip_embedding: (B, clip_dim) image embeddings of the crops.
            empty_context: (1, 77, D) SD text context of "".
        """
        context = empty_context + torch.tanh(self.context_gate) * self.context_proj(clip_embedding)
        time_condition = torch.tanh(self.time_gate) * self.time_proj(clip_embedding)
        return context, time_condition[:, 0]
