"""Which model: one frozen :class:`ModelSpec` (name or path, device, precision), and the choices
every front end offers, declared once here for the CLI, the widgets and the batch runner.

A spec is cheap and picklable (a dask worker receives a spec, not a model); the loaded model
for a spec comes from :mod:`napari_odise.pool`. How a model runs is not part of the spec: that is
an :class:`~napari_odise.model.settings.InferenceSettings` passed with each call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from napari_odise.errors import MissingFileError, UserError
from napari_odise.model.settings import NAMES as SETTINGS_NAMES
from napari_odise.model.settings import InferenceSettings

OFFICIAL_MODELS = ("official", "official-caption")
RANDOM_MODELS = ("tiny", "tiny-caption")  # the official architecture at small widths, seeded random weights
MODEL_NAMES = OFFICIAL_MODELS + RANDOM_MODELS
OFFERED_MODELS = ("official", "official-caption", "tiny")  # what model lists show before any checkpoint
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")

__all__ = [
    "DEVICES",
    "MODEL_NAMES",
    "OFFERED_MODELS",
    "OFFICIAL_MODELS",
    "PRECISIONS",
    "RANDOM_MODELS",
    "SETTINGS_NAMES",
    "ModelChoiceError",
    "ModelSpec",
    "existing_checkpoint",
    "model_name",
]


class ModelChoiceError(UserError, ValueError):
    """An unknown model, device or precision, or one this machine cannot run."""


def existing_checkpoint(name: str | Path) -> Path:
    """The checkpoint file a model argument names, or an error saying what to give instead."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    names = ", ".join(MODEL_NAMES)
    if path.is_dir():
        raise ModelChoiceError(f"{path} is a folder: give the ODISE checkpoint file in it (e.g. model.pth)")
    if path.suffix in CHECKPOINT_SUFFIXES or len(path.parts) > 1:
        raise MissingFileError(f"no checkpoint at {path}: check the path (or use one of the models {names})")
    raise ModelChoiceError(
        f"unknown model {str(name)!r}: use one of {names}, or the path of an ODISE checkpoint in the official "
        "layout (the released .pth, a re-saved copy, or the model.pth written by `napari-odise finetune`)"
    )


def model_name(name_or_path: str | Path) -> str:
    """A model name as given, or a checkpoint path made absolute (one spelling per file)."""
    text = str(name_or_path)
    if text in MODEL_NAMES:
        return text
    return str(Path(text).expanduser().resolve())


@dataclass(frozen=True)
class ModelSpec:
    name: str = "official"  # a name in MODEL_NAMES, or the path of an ODISE checkpoint
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    precision: str = "fp32"

    def __post_init__(self):
        given = str(self.name)
        object.__setattr__(self, "name", model_name(given))
        if self.precision not in PRECISIONS:
            raise ModelChoiceError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        base = str(self.device).split(":")[0]
        if base not in DEVICES or (base != "cuda" and ":" in str(self.device)):
            raise ModelChoiceError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {self.device!r}")
        if self.name not in MODEL_NAMES:
            existing_checkpoint(given)

    @property
    def is_path(self) -> bool:
        return self.name not in MODEL_NAMES

    def on(self, device: str) -> ModelSpec:
        return replace(self, device=device)

    def resolved(self) -> ModelSpec:
        """The same spec with "auto" replaced by the device it means on this machine."""
        if self.device != "auto":
            return self
        from napari_odise.predictor import resolve_device

        return self.on(resolve_device("auto").type)

    # -- without loading weights ----------------------------------------------------------------
    def config(self):
        """The model config this spec builds (read from the checkpoint's keys or config; no weights loaded)."""
        from napari_odise.checkpoints.loading import model_config

        return model_config(self.name)

    @property
    def variant(self) -> str:
        return self.config().variant

    def settings(self, name: str = "evaluation", **overrides) -> InferenceSettings:
        """Named settings for this model: its own resolution options under "evaluation" or "demo"."""
        config = self.config()
        return config.inference.with_name(name, config.variant).replace(**overrides)

    # -- loading --------------------------------------------------------------------------------
    def load(self):
        """A new Predictor for this spec (use :func:`napari_odise.pool.default_pool` to share one)."""
        from napari_odise.predictor import Predictor

        return Predictor.from_pretrained(self.name, device=self.device, precision=self.precision)
