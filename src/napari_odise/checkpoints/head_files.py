"""What an ODISE head file is, read from its keys and shapes alone: label or caption, which size.

A head in the official layout (the release's ``{"model": state_dict}``, a re-saved or converted
copy, a bare state dict) carries no config. Its keys say the variant (``category_head.*``: label,
``word_head.*``: caption) and a few shapes say the size: each known config (official, tiny) has a
signature of shapes computed from its fields, so telling them apart needs neither Stable Diffusion
nor CLIP nor building a model. The strict check of every key and shape happens when the head is
loaded into a model of that config (:func:`head_loading.convert_head`) or, without loading, by
:func:`check_head`. A released file is recognised by its hash, which is never required.
"""

from __future__ import annotations

from pathlib import Path

import torch

from napari_odise.model.config import ODISEConfig, get_config

from .weight_errors import WeightsMismatchError

#: Configs a head without a config file may have, tried in this order.
KNOWN_SIZES = ("official", "tiny")
VARIANT_PREFIXES = {"label": "category_head.", "caption": "word_head."}


class NotAHeadError(WeightsMismatchError):
    """The file is not an ODISE head in the official layout (no category_head.* / word_head.* keys)."""


def read_head(path: str | Path) -> dict[str, torch.Tensor]:
    """The official-layout tensors of a head file, read without executing code (memory-mapped)."""
    from napari_odise.weights.safe_load import load_checkpoint

    return load_checkpoint(path).state_dict


def head_variant(keys, source: str) -> str:
    """"label" or "caption", from which head the file holds."""
    found = [variant for variant, prefix in VARIANT_PREFIXES.items() if any(k.startswith(prefix) for k in keys)]
    if len(found) == 1:
        return found[0]
    if found:
        raise NotAHeadError(f"{source} holds both a label head (category_head.*) and a caption head (word_head.*)")
    raise NotAHeadError(
        f"{source} is not an ODISE head in the official layout: it has no category_head.* (label model) "
        "or word_head.* (caption model) tensors. Give the ODISE checkpoint (e.g. odise_label_coco_50e-*.pth, "
        "or the model.pth written by `napari-odise finetune`)."
    )


def head_signature(config: ODISEConfig) -> dict[str, tuple[int, ...]]:
    """A few official-layout keys whose shapes differ between the known sizes, from the config."""
    head = config.head
    return {
        "backbone.feature_extractor.clip_project.positional_embedding": (
            1,
            config.sd_text.max_position_embeddings,
            config.sd_text.hidden_size,
        ),
        "backbone.feature_extractor.alpha_cond_time_embed": (config.unet.block_out_channels[0] * 4,),
        "sem_seg_head.pixel_decoder.mask_features.weight": (head.mask_dim, head.conv_dim, 1, 1),
        "sem_seg_head.predictor.query_feat.weight": (head.num_queries, head.hidden_dim),
        f"{VARIANT_PREFIXES[config.variant]}text_proj.weight": (head.mask_dim, config.clip.embed_dim),
    }


def config_name(size: str, variant: str) -> str:
    return size if variant == "label" else f"{size}-caption"


def detect_head_config(state: dict[str, torch.Tensor], source: str) -> ODISEConfig:
    """The known config whose variant and signature the head's keys and shapes have."""
    variant = head_variant(state, source)
    differences = {}
    for size in KNOWN_SIZES:
        config = get_config(config_name(size, variant))
        wrong = _signature_differences(config, state)
        if not wrong:
            return config
        differences[size] = wrong
    shown = "; ".join(f"{key} {got} (official: {expected})" for key, got, expected in differences["official"])
    raise WeightsMismatchError(
        f"{source} is an ODISE {variant} head in the official layout, but not of a size napari-odise knows "
        f"(official, or the tiny test model): {shown}. Is it an ODISE checkpoint of another architecture?"
    )


def _signature_differences(config: ODISEConfig, state: dict) -> list[tuple[str, object, tuple]]:
    wrong = []
    for key, expected in head_signature(config).items():
        got = tuple(state[key].shape) if key in state else "missing"
        if got != expected:
            wrong.append((key, got, expected))
    return wrong


def check_head(state: dict[str, torch.Tensor], config: ODISEConfig, source: str) -> None:
    """Every key and shape of an official-layout head against ``config``'s model (built on the
    meta device: nothing allocated, no SD/CLIP read). Raises WeightsMismatchError naming them."""
    from .head_loading import convert_head
    from .meta_models import meta_model

    convert_head(state, meta_model(config), source)


def check_official_head(path: str | Path) -> ODISEConfig:
    """The official config (label or caption) whose head ``path`` fits key by key and shape by
    shape; raises WeightsMismatchError naming what does not fit (``weights import``)."""
    state, source = read_head(path), str(path)
    variant = head_variant(state, source)
    if not _signature_differences(get_config(config_name("tiny", variant)), state):
        raise WeightsMismatchError(
            f"{source} is a head of the tiny test model, not of the official one: load it by path "
            f"(`--model {source}`, `Predictor.from_pretrained(path)`) instead of importing it"
        )
    official = get_config(config_name("official", variant))
    check_head(state, official, source)
    return official


def recognise_release(path: str | Path):
    """(the manifest entry of the released ODISE file that ``path`` is, or None; its sha256)."""
    from napari_odise.weights import all_files, digest_matches, file_sha256

    digest = file_sha256(Path(path))
    return next((w for w in all_files() if w.role == "odise" and digest_matches(digest, w)), None), digest
