"""Names of the official ODISE checkpoints' tensors mapped onto this model's trainable head.

The released ``odise_*_coco_50e-*.pth`` files store the trainable head only (399/400 keys under
"model"). Rules, applied in order, first match wins:

    backbone.feature_extractor.alpha_cond              -> captioner.context_gate
    backbone.feature_extractor.alpha_cond_time_embed   -> captioner.time_gate
    backbone.feature_extractor.clip_project.*          -> captioner.context_proj.*
    backbone.feature_extractor.time_embed_project.*    -> captioner.time_proj.*
    backbone.feature_projections.<i>.0.*               -> backbone.projections.<i>.*
    sem_seg_head.pixel_decoder.*                       -> pixel_decoder.*
    sem_seg_head.predictor.*                           -> decoder.*
    category_head.* (label) / word_head.* (caption)    -> category_head.*

``criterion.empty_weight`` is a training-loss buffer ([1] * classes + [0.1]); it is not part of the
model and is recreated when we save in the official layout.
"""

from __future__ import annotations

import re

_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^backbone\.feature_extractor\.alpha_cond$"), "captioner.context_gate"),
    (re.compile(r"^backbone\.feature_extractor\.alpha_cond_time_embed$"), "captioner.time_gate"),
    (re.compile(r"^backbone\.feature_extractor\.clip_project\.(.+)$"), r"captioner.context_proj.\1"),
    (re.compile(r"^backbone\.feature_extractor\.time_embed_project\.(.+)$"), r"captioner.time_proj.\1"),
    (re.compile(r"^backbone\.feature_projections\.(\d+)\.0\.(.+)$"), r"backbone.projections.\1.\2"),
    (re.compile(r"^sem_seg_head\.pixel_decoder\.(.+)$"), r"pixel_decoder.\1"),
    (re.compile(r"^sem_seg_head\.predictor\.(.+)$"), r"decoder.\1"),
    (re.compile(r"^(?:category_head|word_head)\.(.+)$"), r"category_head.\1"),
]

IGNORED_OFFICIAL_KEYS = frozenset({"criterion.empty_weight"})


def official_to_ours(key: str) -> str | None:
    """Our name for an official key, or None when the key is not a model weight (ignored)."""
    if key in IGNORED_OFFICIAL_KEYS:
        return None
    for pattern, replacement in _RULES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    raise KeyError(f"no mapping for official key {key!r}")


_REVERSE: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^captioner\.context_gate$"), "backbone.feature_extractor.alpha_cond"),
    (re.compile(r"^captioner\.time_gate$"), "backbone.feature_extractor.alpha_cond_time_embed"),
    (re.compile(r"^captioner\.context_proj\.(.+)$"), r"backbone.feature_extractor.clip_project.\1"),
    (re.compile(r"^captioner\.time_proj\.(.+)$"), r"backbone.feature_extractor.time_embed_project.\1"),
    (re.compile(r"^backbone\.projections\.(\d+)\.(.+)$"), r"backbone.feature_projections.\1.0.\2"),
    (re.compile(r"^pixel_decoder\.(.+)$"), r"sem_seg_head.pixel_decoder.\1"),
    (re.compile(r"^decoder\.(.+)$"), r"sem_seg_head.predictor.\1"),
]


def ours_to_official(key: str, variant: str) -> str:
    """The official name of one of our trainable keys (``variant``: "label" or "caption")."""
    if key.startswith("category_head."):
        head = "category_head" if variant == "label" else "word_head"
        return f"{head}.{key[len('category_head.'):]}"
    for pattern, replacement in _REVERSE:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    raise KeyError(f"no official name for {key!r}")
