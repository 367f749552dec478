"""Features of a frozen Stable Diffusion (VAE + UNet) for one batch of crops, taken with hooks.

ODISE uses the *inputs* of chosen blocks. Its indices count blocks in flattened lists:
  - VAE encoder: ``down[level].block[i]`` for level 0..3, i 0..1 -> diffusers ``encoder.down_blocks[l].resnets[i]``
  - UNet: ``output_blocks[k]`` (input = concat(h, skip)) -> diffusers ``up_blocks[k // 3].resnets[k % 3]``,
    whose input is exactly that concatenation
  - VAE decoder: ``up[level].block[i]`` for level 3..0, i 0..2 -> diffusers ``decoder.up_blocks[3 - level].resnets[i]``
    (diffusers stores the decoder's levels in execution order)

The UNet runs at timestep 0 on ``sqrt(abar_0) * latent + sqrt(1 - abar_0) * noise`` with a fixed
noise tensor; the decoder runs on the clean latent. Neither needs anything after its last tap, so a
hook stops them there (the official code runs the decoder to a full image and discards it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class _StopForward(Exception):
    """Raised by the last tap's hook: the rest of the network is not needed."""


@dataclass(frozen=True)
class Tap:
    """One feature: where it is taken, its channels and its stride relative to the crop."""

    source: str  # "encoder" | "unet" | "decoder"
    index: int  # ODISE's flattened block index
    channels: int
    stride: int


def ddpm_coefficients_t0(beta_start: float = 0.00085) -> tuple[float, float]:
    """sqrt(abar_0) and sqrt(1 - abar_0) of SD's "scaled linear" schedule (ODISE's "ldm_linear").

    betas = linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2, so beta_0 = sqrt(beta_start) ** 2 and
    abar_0 = 1 - beta_0: the coefficients are 0.9995749 and 0.0291548.
    """
    beta0 = math.sqrt(beta_start) ** 2
    return math.sqrt(1.0 - beta0), math.sqrt(beta0)


def shared_noise(seed: int = 42, size: int = 64, channels: int = 4) -> torch.Tensor:
    """The fixed noise ODISE adds at t = 0: torch.randn(1, 4, 64, 64) from a generator seeded 42."""
    return torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(seed))


class DiffusionFeatureExtractor(nn.Module):
    """Runs the VAE encoder, the UNet (t = 0) and the VAE decoder and returns the tapped features.

    Args:
        unet: diffusers ``UNet2DConditionModel`` built with ``class_embed_type="identity"``.
        vae: diffusers ``AutoencoderKL``.
        encoder_taps, unet_taps, decoder_taps: ODISE's block indices (see module docstring).
        noise: the fixed noise tensor (1, 4, n, n); bicubic-resized when the latent differs.
    """

    def __init__(self, unet, vae, encoder_taps, unet_taps, decoder_taps, noise: torch.Tensor):
        super().__init__()
        self.unet = unet
        self.vae = vae
        self.register_buffer("noise", noise, persistent=False)
        self.sqrt_alpha_bar, self.sqrt_one_minus_alpha_bar = ddpm_coefficients_t0()
        self.taps: list[Tap] = []
        self._encoder_modules = [self._encoder_block(i) for i in encoder_taps]
        self._unet_modules = [self._unet_block(i) for i in unet_taps]
        self._decoder_modules = [self._decoder_block(i) for i in decoder_taps]
        for i, m in zip(encoder_taps, self._encoder_modules):
            self.taps.append(Tap("encoder", i, m.in_channels, 2 ** ((i + 2) // 2 - 1)))
        for i, m in zip(unet_taps, self._unet_modules):
            self.taps.append(Tap("unet", i, m.in_channels, 64 // 2 ** ((i + 3) // 3 - 1)))
        for i, m in zip(decoder_taps, self._decoder_modules):
            self.taps.append(Tap("decoder", i, m.in_channels, 8 // 2 ** ((i + 3) // 3 - 1)))
        for p in self.parameters():
            p.requires_grad_(False)

    # -- block lookup -------------------------------------------------------------------------
    def _encoder_block(self, index: int) -> nn.Module:
        per_level = self.vae.config.layers_per_block
        return self.vae.encoder.down_blocks[index // per_level].resnets[index % per_level]

    def _unet_block(self, index: int) -> nn.Module:
        per_level = self.unet.config.layers_per_block + 1
        return self.unet.up_blocks[index // per_level].resnets[index % per_level]

    def _decoder_block(self, index: int) -> nn.Module:
        per_level = self.vae.config.layers_per_block + 1
        return self.vae.decoder.up_blocks[index // per_level].resnets[index % per_level]

    # -- running ------------------------------------------------------------------------------
    @staticmethod
    def _capture(modules: list[nn.Module], store: list, stop_after_last: bool):
        handles = []
        last = modules[-1] if modules else None

        def make_hook(module):
            def hook(_module, args):
                store.append(args[0])
                if stop_after_last and module is last:
                    raise _StopForward

            return hook

        for m in modules:
            handles.append(m.register_forward_pre_hook(make_hook(m)))
        return handles

    def _run_capturing(self, modules, fn, stop_after_last: bool) -> list[torch.Tensor]:
        store: list[torch.Tensor] = []
        handles = self._capture(modules, store, stop_after_last)
        try:
            fn()
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        return store

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """VAE encoder on images in [-1, 1]: (scaled posterior mean, encoder features)."""
        out = {}

        def run():
            out["latent"] = self.vae.encode(images).latent_dist.mean * self.vae.config.scaling_factor

        feats = self._run_capturing(self._encoder_modules, run, stop_after_last=False)
        return out["latent"], feats

    def noised(self, latent: torch.Tensor) -> torch.Tensor:
        """The UNet's input, mixed in float32 whatever the model's dtype (the schedule's
        coefficients and the noise do not survive half precision), then given the latent's dtype."""
        noise = self.noise.float()
        if noise.shape[-2:] != latent.shape[-2:]:
            noise = F.interpolate(noise, size=latent.shape[-2:], mode="bicubic", align_corners=False)
        noise = noise.expand_as(latent)
        mixed = self.sqrt_alpha_bar * latent.float() + self.sqrt_one_minus_alpha_bar * noise
        return mixed.to(latent.dtype)

    def unet_features(self, noisy_latent, context, time_condition) -> list[torch.Tensor]:
        timestep = torch.zeros(noisy_latent.shape[0], dtype=torch.long, device=noisy_latent.device)

        def run():
            self.unet(
                noisy_latent,
                timestep,
                encoder_hidden_states=context,
                class_labels=time_condition,
                return_dict=False,
            )

        return self._run_capturing(self._unet_modules, run, stop_after_last=True)

    def decoder_features(self, latent: torch.Tensor) -> list[torch.Tensor]:
        def run():
            self.vae.decode(latent / self.vae.config.scaling_factor, return_dict=False)

        return self._run_capturing(self._decoder_modules, run, stop_after_last=True)

    def forward(self, images01: torch.Tensor, context: torch.Tensor, time_condition: torch.Tensor):
        """Features (in tap order) of a batch of crops with values in [0, 1].

        Args:
            images01: (B, 3, S, S) crops, S the SD resolution.
            context: (B, 77, D) UNet cross-attention context.
            time_condition: (B, T) added to the UNet time embedding.
        """
        latent, enc = self.encode(images01 * 2.0 - 1.0)
        unet = self.unet_features(self.noised(latent), context, time_condition)
        dec = self.decoder_features(latent)
        return [*enc, *unet, *dec]
