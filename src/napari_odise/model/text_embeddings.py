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
    """String -> CLIP embedding (CPU float32), filled in batches.

    ``store``: an optional lasting store beside the in-memory one (``get_many(texts) -> dict``,
    ``put_many(dict)``; :class:`napari_odise.weights.text_store.TextEmbeddingStore` keeps them on
    disk, so a restart does not embed a preset again). The loader attaches it; the model reads no files."""

    def __init__(self, store=None):
        self._cache: dict[str, torch.Tensor] = {}
        self.store = store
        self.encoded_strings = 0  # how many strings went through CLIP (tests count it)

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self):
        self._cache.clear()

    def embed(self, clip, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing and self.store is not None:
            self._cache.update(self.store.get_many(missing))
            missing = [t for t in missing if t not in self._cache]
        if missing:
            values = text_embeddings(clip, missing, batch_size).cpu()
            computed = dict(zip(missing, values))
            self._cache.update(computed)
            self.encoded_strings += len(missing)
            if self.store is not None:
                self.store.put_many(computed)
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
