"""Does the user's own Stable Diffusion or CLIP file fit the official model? Checked key by key and
shape by shape when ``napari-odise weights use`` records it, not at the first start minutes later.

Only names and shapes are read (a safetensors header, a memory-mapped pickle or TorchScript
archive) and compared through the same renaming and strict checks the loaders use, against the
model built on the meta device: nothing is converted and no weight value is read.
"""

from __future__ import annotations

from pathlib import Path

from napari_odise.errors import InvalidInputError, MissingFileError
from napari_odise.model.config import ODISEConfig, get_config

from .meta_models import meta_model, meta_sd_text_encoder

#: What the stand-ins must fit: Stable Diffusion and CLIP are the same for both official models.
REFERENCE_MODEL = "official"


def check_stand_in(role: str, path: str | Path, config: ODISEConfig | None = None) -> None:
    """Raise WeightsMismatchError (naming the tensors) unless ``path`` fits ``role`` ("sd", "clip")."""
    checks = {"sd": check_sd, "clip": check_clip}
    if role not in checks:
        raise InvalidInputError(f"own files can replace {sorted(checks)} only, not {role!r}")
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path} does not exist")
    checks[role](path, config or get_config(REFERENCE_MODEL))


def check_sd(path: Path, config: ODISEConfig) -> None:
    """An SD v1 checkpoint in the ldm layout (.ckpt / .safetensors) or a diffusers folder."""
    from napari_odise.weights.safe_load import load_checkpoint_shapes

    from .sd_conversion import convert_ldm, load_diffusers_folder

    model, text_encoder = meta_model(config), meta_sd_text_encoder(config)
    unet, vae = model.features.unet, model.features.vae
    if path.is_dir():
        load_diffusers_folder(path, unet, vae, text_encoder, read=load_checkpoint_shapes)
    else:
        convert_ldm(load_checkpoint_shapes(path), unet, vae, text_encoder, str(path))


def check_clip(path: Path, config: ODISEConfig) -> None:
    """OpenAI's TorchScript archive (read by the restricted reader) or an open_clip state dict."""
    from napari_odise.weights.safe_load import load_checkpoint_shapes

    from .clip_conversion import convert_clip

    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder: give the CLIP weights file (e.g. ViT-L-14-336px.pt)")
    convert_clip(load_checkpoint_shapes(path), meta_model(config).clip, str(path))
