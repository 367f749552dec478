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

    def category_logits(self, mask_embed, text_embed, counts: list[int], scale) -> torch.Tensor:
        """(..., K) scaled cosine of mask embeddings with the projected texts, max over synonyms."""
        from .ensemble import max_over_synonyms

        return max_over_synonyms(scaled_cosine(mask_embed, self.project(text_embed), scale), counts)

    def logits_with_no_object(self, mask_embed, text_embed, counts: list[int], scale) -> torch.Tensor:
        """(..., K + 1): the label model's class logits, "no object" last (official cal_pred_logits)."""
        categories = self.category_logits(mask_embed, text_embed, counts, scale)
        return torch.cat([categories, scaled_cosine(mask_embed, self.null(), scale)], dim=-1)


def scaled_cosine(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """scale * cos(a_i, b_j) for a (..., N, C) and b (M, C) -> (..., N, M)."""
    return scale * (F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t())
