"""How ODISE turns similarities into class scores.

- Synonyms: a category's logit is the max over its synonyms' logits.
- Geometric ensemble with the CLIP mask classifier: with p = softmax(ODISE logits) and
  q = softmax(CLIP logits) over the K categories, a category seen in COCO training gets
  log(p^(1-alpha) q^alpha) and an unseen one log(p^(1-beta) q^beta).
- Background: the final class probabilities are softmax(ensemble) * (1 - p_no_object) with
  p_no_object appended, returned as log(prob + 1e-8) like the official code.
"""

from __future__ import annotations

import torch


def max_over_synonyms(logits: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """(..., sum(counts)) -> (..., len(counts)): each category's best synonym."""
    if sum(counts) != logits.shape[-1]:
        raise ValueError(f"{logits.shape[-1]} synonym logits for {sum(counts)} synonyms")
    index = torch.repeat_interleave(torch.arange(len(counts), device=logits.device), torch.tensor(counts, device=logits.device))
    out = torch.full((*logits.shape[:-1], len(counts)), float("-inf"), dtype=logits.dtype, device=logits.device)
    return out.scatter_reduce(-1, index.expand_as(logits), logits, reduce="amax", include_self=True)


def geometric_ensemble(
    odise_logits: torch.Tensor, clip_logits: torch.Tensor, seen: torch.Tensor, alpha: float, beta: float
) -> torch.Tensor:
    """log(p^(1-w) q^w) per category, w = alpha where ``seen`` else beta.

    The official code multiplies both branches by a 0/1 mask and adds them, which yields NaN when
    the unused branch underflows to log(0); selecting the branch gives the same finite values.
    """
    p = odise_logits.softmax(-1)
    q = clip_logits.softmax(-1)
    weight = torch.where(seen.to(p.device), alpha, beta).to(p.dtype)
    return (p ** (1 - weight) * q**weight).log()


def with_background(class_logits: torch.Tensor, p_background: torch.Tensor) -> torch.Tensor:
    """log([softmax(class_logits) * (1 - p_bg), p_bg] + 1e-8): (..., K) -> (..., K + 1)."""
    probs = class_logits.softmax(-1) * (1 - p_background.unsqueeze(-1))
    return torch.log(torch.cat([probs, p_background.unsqueeze(-1)], dim=-1) + 1e-8)
