"""Load a ready-to-use model by name or path, and say what a name or path builds without loading it.

Names: "tiny", "tiny-caption" (seeded random weights), "official", "official-caption" (the
weights store). A path is an ODISE head in the official layout:

* a checkpoint written by ``napari-odise finetune``: the ``.config.json`` beside it says which base
  model it sits on and with which sizes and inference settings;
* any other head, without a config: the released file, a re-saved, converted or mirrored copy
  (``{"model": state_dict}`` with or without ``_metadata``, or a bare state dict). Its keys say
  label or caption and its shapes official or tiny size (:mod:`head_files`); a released file is
  recognised by its hash, which is not required.

An official-size head sits on the official Stable Diffusion + CLIP from the weights store (the head
given replaces the manifest's ODISE file); a tiny-size head on the tiny model's seeded random
frozen parts. Every key and shape is checked strictly when the head is loaded.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, fields, is_dataclass, replace
from functools import lru_cache
from pathlib import Path

from napari_odise.errors import InvalidInputError, UserError
from napari_odise.model.build import build_odise
from napari_odise.model.config import ODISEConfig, get_config
from napari_odise.model.odise import ODISE
from napari_odise.models import OFFICIAL_MODELS, RANDOM_MODELS, existing_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadCheckpoint:
    """What an ODISE head file builds: ``config`` (variant, sizes, inference settings) on the
    frozen parts of ``base`` (one of the model names)."""

    path: Path
    config: ODISEConfig
    base: str
    has_config_file: bool


def load_model(name_or_path: str | Path, dtype=None, **options) -> ODISE:
    """The model a name or a checkpoint path stands for (``options`` go to :func:`load_official`).

    ``dtype`` (torch.float16/bfloat16) stores the weights in half precision (model/precision.py);
    official weights are converted one tensor at a time as they are read, never all in float32."""
    name = str(name_or_path)
    if name in RANDOM_MODELS:
        return _in_dtype(build_odise(get_config(name)), dtype)
    if name in OFFICIAL_MODELS:
        from .official_loading import load_official

        return load_official(name, dtype=dtype, **options)
    return load_head_checkpoint(describe_checkpoint(name), dtype=dtype, **options)


def _in_dtype(model: ODISE, dtype) -> ODISE:
    """Random weights are drawn in float32 (the same numbers at every precision), then stored in ``dtype``."""
    if dtype is None:
        return model
    from napari_odise.model.precision import to_precision

    return to_precision(model, dtype)


def model_config(name_or_path: str | Path) -> ODISEConfig:
    """The config a name or path builds, without loading Stable Diffusion or CLIP: from the preset,
    the ``.config.json`` beside a fine-tuned checkpoint, or the head's keys and shapes."""
    name = str(name_or_path)
    if name in RANDOM_MODELS or name in OFFICIAL_MODELS:
        return get_config(name)
    return describe_checkpoint(name).config


def finetuned_config_path(checkpoint: Path) -> Path:
    """Where a fine-tuned checkpoint keeps its model config (next to it)."""
    return Path(checkpoint).with_suffix(".config.json")


def describe_checkpoint(path: str | Path) -> HeadCheckpoint:
    """Config and base model of a head file (reads its config file, else its keys and shapes).

    Remembered while the files are unchanged: front ends ask for a model's variant and settings often."""
    path = existing_checkpoint(path)
    config_file = finetuned_config_path(path)
    described = _describe(path.resolve(), _stamp(path), _stamp(config_file) if config_file.is_file() else None)
    return replace(described, config=copy.deepcopy(described.config))  # configs are plain (mutable) dataclasses


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@lru_cache(maxsize=16)
def _describe(path: Path, stamp: tuple[int, int], config_stamp: tuple[int, int] | None) -> HeadCheckpoint:
    config_file = finetuned_config_path(path)
    if config_stamp is not None:
        config, base = _saved_config(config_file)
        return HeadCheckpoint(path, config, base, has_config_file=True)
    from .head_files import detect_head_config, read_head

    config = detect_head_config(read_head(path), str(path))
    return HeadCheckpoint(path, config, config.name, has_config_file=False)


def _saved_config(config_file: Path) -> tuple[ODISEConfig, str]:
    """The fine-tuned head's recorded config, refused unless its architecture is exactly its
    base model's: the file is data beside a checkpoint and must not pick a model size."""
    try:
        saved = json.loads(config_file.read_text(encoding="utf-8-sig"))
        config = ODISEConfig.from_dict(saved["config"])
        base = saved.get("base_model", config.name)
    except UserError as error:
        raise InvalidInputError(f"{config_file}: {error}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise InvalidInputError(
            f"{config_file} is unreadable ({type(error).__name__}: {error}); it is written by "
            "`napari-odise finetune` beside its model.pth: restore it, or delete it to load the checkpoint "
            "as a plain official-layout head with the default settings"
        ) from None
    if not isinstance(base, str) or base not in RANDOM_MODELS + OFFICIAL_MODELS:
        raise InvalidInputError(f"{config_file}: unknown base model {base!r}")
    _check_architecture(config, get_config(base), config_file, base)
    return config, base


# What may differ from the base model: run-time settings, the name, and seeds.
_FREE_FIELDS = ("inference", "name", "init_seed", "noise_seed")


def _check_architecture(config: ODISEConfig, base: ODISEConfig, config_file: Path, name: str) -> None:
    differing = [
        f"{part}.{key}" if key else part
        for part, key in _architecture_differences(config, base)
    ]
    if differing:
        raise InvalidInputError(
            f"{config_file}: its model does not have the shapes of its base model {name!r} "
            f"({', '.join(differing[:8])} differ); a fine-tuned head keeps its base model's "
            "architecture: restore the file written by `napari-odise finetune`, or delete it"
        )


def _architecture_differences(config: ODISEConfig, base: ODISEConfig):
    for item in fields(ODISEConfig):
        if item.name in _FREE_FIELDS:
            continue
        mine, theirs = getattr(config, item.name), getattr(base, item.name)
        if is_dataclass(theirs) and is_dataclass(mine) and type(mine) is type(theirs):
            for sub in fields(theirs):
                a, b = getattr(mine, sub.name), getattr(theirs, sub.name)
                if a != b or type(a) is not type(b):
                    yield item.name, sub.name
        elif mine != theirs or type(mine) is not type(theirs):
            yield item.name, ""


def load_head_checkpoint(checkpoint: HeadCheckpoint, dtype=None, **options) -> ODISE:
    """The head on its base model's frozen parts, built from the checkpoint's config from the start."""
    if not checkpoint.has_config_file:
        _log_release(checkpoint)
    if checkpoint.base in OFFICIAL_MODELS:
        from .official_loading import load_official

        return load_official(checkpoint.base, odise=checkpoint.path, config=checkpoint.config, dtype=dtype, **options)
    from .head_files import read_head
    from .head_loading import convert_head, load_head_into

    model = build_odise(checkpoint.config)
    load_head_into(model, convert_head(read_head(checkpoint.path), model, str(checkpoint.path)))
    return _in_dtype(model, dtype)


def _log_release(checkpoint: HeadCheckpoint) -> None:
    from .head_files import recognise_release

    released, digest = recognise_release(checkpoint.path)
    variant = checkpoint.config.variant
    if released is not None:
        log.info("%s is the released %s (sha256 %s)", checkpoint.path, released.filename, digest)
    else:
        log.info(
            "%s: an ODISE %s head in the official layout at %s size, not a released file (sha256 %s)",
            checkpoint.path, variant, checkpoint.base.split("-")[0], digest,
        )
