"""CLIP text embeddings of a vocabulary, computed in batches and cached by string.

ODISE embeds every synonym of every category; the label model's category head uses the raw
synonym strings, the CLIP classifier (and the caption model's word head) "a photo of a {}.".
A vocabulary change only embeds strings never seen before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from napari_odise.errors import InvalidInputError

from .clip_encoder import text_embeddings

PHOTO_PROMPT = "a photo of a {}."


@dataclass
class VocabularyEmbedding:
    """What ``ODISE.classify`` needs to know about a vocabulary."""

    counts: list[int]  # synonyms per category
    raw: torch.Tensor | None  # (S, D) embeddings of the raw synonyms (label model only)
    photo: torch.Tensor  # (S, D) embeddings of "a photo of a {synonym}."
    seen: torch.Tensor  # (K,) bool: category shares a synonym with the COCO training vocabulary
    isthing: list[bool]

    @property
    def num_categories(self) -> int:
        return len(self.counts)


class TextEmbeddingCache:
    """String -> CLIP embedding (CPU float32), filled in batches."""

    def __init__(self):
        self._cache: dict[str, torch.Tensor] = {}
        self.encoded_strings = 0  # how many strings went through CLIP (tests count it)

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self):
        self._cache.clear()

    def embed(self, clip, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            values = text_embeddings(clip, missing, batch_size).cpu()
            self._cache.update(zip(missing, values))
            self.encoded_strings += len(missing)
        if not texts:
            return torch.zeros(0, clip.text_projection.shape[-1])
        return torch.stack([self._cache[t] for t in texts])


def embed_vocabulary(
    clip,
    cache: TextEmbeddingCache,
    synonyms: list[list[str]],
    isthing: list[bool],
    seen: list[bool],
    with_raw: bool = True,
) -> VocabularyEmbedding:
    if not synonyms:
        raise InvalidInputError("the vocabulary is empty: give at least one category")
    if any(len(s) == 0 for s in synonyms):
        raise InvalidInputError("every category needs at least one synonym")
    flat = [s for group in synonyms for s in group]
    raw = cache.embed(clip, flat) if with_raw else None
    photo = cache.embed(clip, [PHOTO_PROMPT.format(s) for s in flat])
    return VocabularyEmbedding(
        counts=[len(s) for s in synonyms],
        raw=raw,
        photo=photo,
        seen=torch.tensor(seen, dtype=torch.bool),
        isthing=list(isthing),
    )
