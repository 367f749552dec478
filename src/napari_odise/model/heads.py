"""Text side of ODISE's classifier: CLIP text embeddings projected into the mask-embedding space.

Label model (``category_head``): projects the CLIP embeddings of the raw synonym strings, plus a
learned "no object" embedding (initialised from CLIP's embedding of "" in the official code).
Caption model (``word_head``): projects the embeddings of "a photo of a {synonym}." and has no
"no object" embedding (its decoder has a binary foreground/background class head instead).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CategoryHead(nn.Module):
    def __init__(self, clip_dim: int, projection_dim: int, with_null_embed: bool):
        super().__init__()
        self.text_proj = nn.Linear(clip_dim, projection_dim)
        self.null_embed = nn.Parameter(torch.zeros(1, clip_dim)) if with_null_embed else None

    def project(self, clip_text_embeddings: torch.Tensor) -> torch.Tensor:
        return self.text_proj(clip_text_embeddings.to(self.text_proj.weight.dtype))

    def null(self) -> torch.Tensor:
        if self.null_embed is None:
            raise RuntimeError("the caption model has no 'no object' embedding")
        return self.text_proj(self.null_embed)


def scaled_cosine(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """scale * cos(a_i, b_j) for a (..., N, C) and b (M, C) -> (..., N, M)."""
    return scale * (F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t())
