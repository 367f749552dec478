"""The learning-rate schedule: linear warm-up, then ODISE's steps (x0.1 at 88.9 %, x0.01 at 96.3 % of
training, as configs/Panoptic/odise_*_coco_50e.py) or a cosine decay."""

from __future__ import annotations

import math

from napari_odise.errors import InvalidInputError


def lr_factor(step: int, total: int, warmup: int, warmup_factor: float = 0.067, kind: str = "step") -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total``."""
    if warmup > 0 and step < warmup:
        alpha = step / warmup
        warm = warmup_factor * (1 - alpha) + alpha
    else:
        warm = 1.0
    progress = step / max(total, 1)
    if kind == "step":
        decay = 1.0 if progress < 163889 / 184375 else (0.1 if progress < 177546 / 184375 else 0.01)
    elif kind == "cosine":
        decay = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    elif kind == "constant":
        decay = 1.0
    else:
        raise InvalidInputError(f"unknown schedule {kind!r}: use 'step', 'cosine' or 'constant'")
    return warm * decay
