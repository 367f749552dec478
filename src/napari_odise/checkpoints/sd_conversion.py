"""Stable Diffusion v1 weights in the original CompVis (ldm) layout -> diffusers UNet, VAE, text encoder.

The renaming itself is diffusers' (``convert_ldm_unet_checkpoint`` / ``convert_ldm_vae_checkpoint``);
this module adds what a user needs: strictness (every tensor of the file is used or known to be
irrelevant, every model tensor is present, shapes checked) with errors that name the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from napari_odise.errors import MissingFileError

from .weight_errors import WeightsMismatchError, check_state_dict, group_by_prefix

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer.text_model."
# Tensors of an ldm checkpoint that ODISE does not need (noise schedule buffers, EMA copies,
# an old transformers buffer). The schedule is recomputed (diffusion_features.ddpm_coefficients_t0).
SCHEDULE_KEYS = frozenset(
    {
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "logvar",
        "lvlb_weights",
    }
)
IGNORED_PREFIXES = ("model_ema.",)
IGNORED_KEYS = frozenset({TEXT_PREFIX + "embeddings.position_ids"})
# Diffusers folders saved before diffusers 0.14 name the VAE mid-block attention as the old
# AttentionBlock did; diffusers renames them on load (ModelMixin._fix_state_dict_keys_on_load, once
# _convert_deprecated_attention_blocks: private and renamed, hence this table). Same shapes (linear).
DEPRECATED_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


@dataclass
class SDWeights:
    """Diffusers-named state dicts of SD's three parts."""

    unet: dict[str, torch.Tensor]
    vae: dict[str, torch.Tensor]
    text_encoder: dict[str, torch.Tensor]


def _shapes(module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def split_ldm_checkpoint(state: dict[str, torch.Tensor], source: str) -> dict[str, dict[str, torch.Tensor]]:
    parts = {"unet": {}, "vae": {}, "text": {}}
    unknown = []
    for key, value in state.items():
        if key.startswith(UNET_PREFIX):
            parts["unet"][key] = value
        elif key.startswith(VAE_PREFIX):
            parts["vae"][key] = value
        elif key.startswith(TEXT_PREFIX):
            if key not in IGNORED_KEYS:
                parts["text"][key[len(TEXT_PREFIX) :]] = value
        elif key in SCHEDULE_KEYS or key.startswith(IGNORED_PREFIXES):
            continue
        else:
            unknown.append(key)
    if unknown:
        raise WeightsMismatchError(
            f"{source} has {len(unknown)} tensors that are not part of a Stable Diffusion v1 checkpoint:\n"
            f"{group_by_prefix(unknown)}\nIs this an SD v1.x file in the original (CompVis) layout?"
        )
    return parts


def convert_ldm(state: dict[str, torch.Tensor], unet, vae, text_encoder, source: str) -> SDWeights:
    """Rename and check an ldm-layout state dict against the given (possibly meta) models."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    parts = split_ldm_checkpoint(state, source)
    unet_sd = convert_ldm_unet_checkpoint(parts["unet"], dict(unet.config))
    vae_sd = convert_ldm_vae_checkpoint(parts["vae"], dict(vae.config))
    # A bijection: as many tensors converted as there were in the file, and exactly the model's names.
    for name, original, converted, model in (
        ("UNet", parts["unet"], unet_sd, unet),
        ("VAE", parts["vae"], vae_sd, vae),
    ):
        check_state_dict(_shapes(model), converted, source, f"Stable Diffusion {name}")
        if len(original) != len(converted):
            raise WeightsMismatchError(
                f"{source}: {len(original)} {name} tensors in the file but {len(converted)} were used; "
                "the file has extra or renamed layers"
            )
    text_expected = {k: s for k, s in _shapes(text_encoder).items() if k != "embeddings.position_ids"}
    check_state_dict(text_expected, parts["text"], source, "Stable Diffusion text encoder")
    return SDWeights(unet_sd, vae_sd, parts["text"])


def rename_deprecated_attention(state: dict, expected) -> dict:
    """Old attention names -> current ones, only where the model wants the current name and the
    file lacks it: a file holding both keeps the old key, which the strict check then reports."""
    renamed = {}
    for key, value in state.items():
        current = _current_attention_name(key)
        if current is not None and current in expected and current not in state:
            key = current
        renamed[key] = value
    return renamed


def _current_attention_name(key: str) -> str | None:
    """'...attentions.0.query.weight' -> '...attentions.0.to_q.weight'; None for other keys."""
    parts = key.split(".")
    if len(parts) < 2 or parts[-2] not in DEPRECATED_ATTENTION_NAMES:
        return None
    return ".".join([*parts[:-2], DEPRECATED_ATTENTION_NAMES[parts[-2]], parts[-1]])


def load_diffusers_folder(folder, unet, vae, text_encoder, read=None) -> SDWeights:
    """SD v1 in diffusers' folder layout (unet/, vae/, text_encoder/ with safetensors or .bin).

    ``read`` (path -> state dict) replaces reading the tensors, e.g. by their shapes only for a check.
    """
    from pathlib import Path

    from napari_odise.weights.safe_load import load_checkpoint

    read = read or (lambda path: load_checkpoint(path).state_dict)
    folder = Path(folder)
    out = {}
    for sub, model in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        candidates = sorted((folder / sub).glob("*.safetensors")) or sorted((folder / sub).glob("*.bin"))
        candidates = [c for c in candidates if ".fp16." not in c.name] or candidates
        if not candidates:
            raise MissingFileError(f"{folder / sub} has no weights file (*.safetensors or *.bin)")
        state = dict(read(candidates[0]))
        if sub == "text_encoder":
            state = {k[len("text_model.") :] if k.startswith("text_model.") else k: v for k, v in state.items()}
            state.pop("embeddings.position_ids", None)
            expected = {k: s for k, s in _shapes(model).items() if k != "embeddings.position_ids"}
        else:
            expected = _shapes(model)
            state = rename_deprecated_attention(state, expected)
        check_state_dict(expected, state, str(candidates[0]), f"Stable Diffusion {sub}")
        out[sub] = state
    return SDWeights(out["unet"], out["vae"], out["text_encoder"])
