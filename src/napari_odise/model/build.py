"""Build an ODISE model from a config: random weights (tiny model, tests) or on the meta device.

Frozen parts come from their own libraries (diffusers UNet/VAE, open_clip CLIP, transformers text
encoder); loading real weights into them is done by :mod:`napari_odise.checkpoints.loading`.
"""

from __future__ import annotations

import torch

from .clip_encoder import build_clip, text_embeddings
from .config import ODISEConfig, get_config
from .diffusion_features import shared_noise
from .odise import ODISE
from .sd_context import build_sd_text_encoder, empty_context


def build_unet(config: ODISEConfig):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config.unet.diffusers_kwargs()).eval()


def build_vae(config: ODISEConfig):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config.vae.diffusers_kwargs()).eval()


def build_odise(
    config: ODISEConfig | str,
    device: str | torch.device = "cpu",
    sd_text_encoder=None,
) -> ODISE:
    """An ODISE model with random weights (seeded by ``config.init_seed``).

    On ``device="meta"`` nothing is allocated: names and shapes only (for checks against the
    official key lists and for building before loading weights).
    The empty-caption context comes from ``sd_text_encoder`` when given, else from a random one.
    """
    if isinstance(config, str):
        config = get_config(config)
    device = torch.device(device)
    context_len = config.sd_text.max_position_embeddings
    context_dim = config.sd_text.hidden_size
    if device.type == "meta":
        with torch.device("meta"):
            model = _assemble(
                config,
                torch.empty(1, context_len, context_dim),
                torch.empty(1, config.vae.latent_channels, config.noise_size, config.noise_size),
            )
        return model
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(config.init_seed)
        if sd_text_encoder is None:
            sd_text_encoder = build_sd_text_encoder(config.sd_text)
        context = empty_context(sd_text_encoder)
        noise = shared_noise(config.noise_seed, config.noise_size, config.vae.latent_channels)
        model = _assemble(config, context, noise)
        if model.category_head.null_embed is not None:
            # official init: the null embedding starts as CLIP's text embedding of ""
            with torch.no_grad():
                model.category_head.null_embed.copy_(text_embeddings(model.clip, [""]))
    finally:
        torch.random.set_rng_state(generator_state)
    return model.to(device).eval()


def _assemble(config: ODISEConfig, context: torch.Tensor, noise: torch.Tensor) -> ODISE:
    return ODISE(config, build_clip(config.clip), build_unet(config), build_vae(config), context, noise)
