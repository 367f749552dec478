"""How a model runs, as one frozen value passed to every call and recorded on what it made.

A model never holds mutable run-time options: ``encode``/``classify``/``panoptic`` take an
:class:`InferenceSettings`; variants are made with :meth:`InferenceSettings.replace`. The
defaults are the evaluation settings behind the paper's numbers; the official demo overrides
the ensemble weights and the panoptic merge's kept-area threshold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from napari_odise.errors import UserError

NAMES = ("evaluation", "demo")  # named settings offered by the CLI and the widgets


class SettingsError(UserError, ValueError):
    """An unknown inference setting or a value out of its range."""


@dataclass(frozen=True)
class InferenceSettings:
    crop_size: int = 512  # backbone input (SD resolution); crops are min(crop_size, short side)
    short_edge: int = 1024  # test-time ResizeShortestEdge (detectron2), as the official evaluation
    max_size: int = 2560
    size_divisibility: int = 64
    overlap_threshold: float = 0.8  # kept-area rule of the panoptic merge (official demo: 0.0)
    object_mask_threshold: float = 0.0
    alpha: float = 0.3  # CLIP weight for categories seen in COCO training (demo: 0.35)
    beta: float = 0.7  # CLIP weight for unseen categories (demo: 0.65)
    instances_topk: int = 100
    crop_batch_size: int = 4  # crops of one image run together; 1 is the low-memory fallback
    mask_cache_mb: int = 1024  # full-size masks kept for fast re-classification (0: never)

    # What the backbone's output depends on, and what acts after it (classification and merge).
    ENCODE: ClassVar[tuple[str, ...]] = ("crop_size", "short_edge", "max_size", "size_divisibility")
    CLASSIFY: ClassVar[tuple[str, ...]] = ("overlap_threshold", "object_mask_threshold", "alpha", "beta")

    def __post_init__(self):
        for name in ("crop_size", "short_edge", "max_size", "size_divisibility", "crop_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingsError(f"inference setting {name} must be a whole number >= 1, got {value!r}")
        for name in ("overlap_threshold", "alpha", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise SettingsError(f"inference setting {name} must be a number between 0 and 1, got {value!r}")
        if not isinstance(self.object_mask_threshold, (int, float)) or isinstance(self.object_mask_threshold, bool):
            raise SettingsError(f"inference setting object_mask_threshold must be a number, got {self.object_mask_threshold!r}")
        for name in ("instances_topk", "mask_cache_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SettingsError(f"inference setting {name} must be a whole number >= 0, got {value!r}")

    # -- named settings -----------------------------------------------------------------------
    @classmethod
    def evaluation(cls, variant: str = "label", **overrides) -> InferenceSettings:
        """The official evaluation settings (label model 0.3/0.7, caption model 0.35/0.65)."""
        weights = {"alpha": 0.3, "beta": 0.7} if variant == "label" else {"alpha": 0.35, "beta": 0.65}
        return cls().replace(**weights, **overrides)

    @classmethod
    def demo(cls, variant: str = "label", **overrides) -> InferenceSettings:
        """The official demo's settings: ensemble 0.35/0.65, kept-area threshold 0."""
        return cls.evaluation(variant).replace(alpha=0.35, beta=0.65, overlap_threshold=0.0, **overrides)

    @classmethod
    def named(cls, name: str, variant: str = "label", **overrides) -> InferenceSettings:
        if name not in NAMES:
            raise SettingsError(f"settings must be one of {', '.join(NAMES)}, got {name!r}")
        return getattr(cls, name)(variant, **overrides)

    def with_name(self, name: str, variant: str = "label") -> InferenceSettings:
        """These settings' resolution and memory options under the named ensemble/merge settings."""
        return self.replace(**InferenceSettings.named(name, variant).classify_part())

    # -- variants and records -------------------------------------------------------------------
    def replace(self, **changes) -> InferenceSettings:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise SettingsError(f"unknown inference setting(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def encode_part(self) -> dict:
        return {name: getattr(self, name) for name in self.ENCODE}

    def classify_part(self) -> dict:
        return {name: getattr(self, name) for name in self.CLASSIFY}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, base: InferenceSettings | None = None) -> InferenceSettings:
        """Settings recorded by :meth:`to_dict` (or a part of them, over ``base``)."""
        if not isinstance(data, dict):
            raise SettingsError(f"inference settings must be a JSON object, got {type(data).__name__}")
        return (base or cls()).replace(**data)
