"""Models built on the ``meta`` device: every name and shape, no memory, no weights read.

What a checkpoint is checked against before anything is loaded (``weights import``, ``weights
use``). The known configs' are built once per process: building the official one takes a moment.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from napari_odise.model.config import PRESETS, ODISEConfig, get_config


def meta_model(config: ODISEConfig):
    """An ODISE model of ``config`` on the meta device (shared between calls for the presets)."""
    from napari_odise.model.build import build_odise

    if config.name in PRESETS and same_shapes(config, get_config(config.name)):
        return _meta_preset(config.name)
    return build_odise(config, device="meta")


@lru_cache(maxsize=4)
def _meta_preset(name: str):
    from napari_odise.model.build import build_odise

    return build_odise(get_config(name), device="meta")


def meta_sd_text_encoder(config: ODISEConfig):
    """Stable Diffusion's text encoder of ``config`` on the meta device (not part of ODISE)."""
    import torch

    from napari_odise.model.sd_context import build_sd_text_encoder

    with torch.device("meta"):
        return build_sd_text_encoder(config.sd_text)


def same_shapes(config: ODISEConfig, preset: ODISEConfig) -> bool:
    """Equal but for what leaves every tensor's shape alone (settings, random seeds)."""
    return replace(config, inference=preset.inference, init_seed=preset.init_seed, noise_seed=preset.noise_seed) == preset
