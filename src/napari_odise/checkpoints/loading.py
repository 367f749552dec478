"""Load a ready-to-use model by name: "tiny", "tiny-caption", "official", "official-caption", or a
checkpoint file saved by napari-odise (a fine-tuned head in the official layout, with its config).
"""

from __future__ import annotations

import json
from pathlib import Path

from napari_odise.model.build import build_odise
from napari_odise.model.config import ODISEConfig, get_config
from napari_odise.model.odise import ODISE

RANDOM_MODELS = ("tiny", "tiny-caption")
OFFICIAL_MODELS = ("official", "official-caption")


def load_model(name_or_path: str | Path, **options) -> ODISE:
    name = str(name_or_path)
    if name in RANDOM_MODELS:
        return build_odise(get_config(name))
    if name in OFFICIAL_MODELS:
        from .official_loading import load_official

        return load_official(name, **options)
    path = Path(name)
    if path.exists():
        return load_finetuned(path, **options)
    raise ValueError(
        f"unknown model {name!r}: use one of {', '.join(RANDOM_MODELS + OFFICIAL_MODELS)} "
        "or the path of a checkpoint saved by napari-odise"
    )


def finetuned_config_path(checkpoint: Path) -> Path:
    """Where a fine-tuned checkpoint keeps its model config (next to it)."""
    return checkpoint.with_suffix(".config.json")


def load_finetuned(path: Path, **options) -> ODISE:
    """A head saved by napari-odise (official key layout) on top of its base model's frozen parts."""
    from napari_odise.weights.safe_load import load_checkpoint

    from .head_loading import convert_head, load_head_into

    config_file = finetuned_config_path(path)
    if not config_file.exists():
        raise FileNotFoundError(
            f"{path} has no {config_file.name} next to it: the config saved with the checkpoint is needed "
            "to rebuild the model (which base model, which sizes)"
        )
    config = ODISEConfig.from_dict(json.loads(config_file.read_text())["config"])
    base = json.loads(config_file.read_text()).get("base_model", config.name)
    model = load_model(base, **options) if base in OFFICIAL_MODELS else build_odise(config)
    model.config.inference = config.inference
    checkpoint = load_checkpoint(path)
    state = convert_head(checkpoint.state_dict, model, str(path))
    load_head_into(model, state)
    return model
