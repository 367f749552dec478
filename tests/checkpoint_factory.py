"""Synthetic checkpoints in the official file layouts, for any model config (tiny in tests).

The key names of Stable Diffusion's original (ldm) layout come from the reference list measured on
the official code (tests/data/reference/sd_v1_ldm_keys.tsv); the tiny model has the same blocks, so
it has the same names with other shapes. The name correspondence ldm <-> diffusers is read off
diffusers' own converter by sending it one tagged tensor per key.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

REFERENCE = Path(__file__).resolve().parent / "data" / "reference"


def reference_keys(name: str) -> "OrderedDict[str, tuple[int, ...]]":
    keys = OrderedDict()
    for line in (REFERENCE / name).read_text().splitlines():
        if line.startswith("#") or line.startswith("key\t"):
            continue
        key, shape = line.split("\t")[:2]
        keys[key] = tuple(int(x) for x in shape.split("x")) if shape not in ("scalar", "") else ()
    return keys


def ldm_to_diffusers_names(unet, vae) -> dict[str, str]:
    """ldm key -> diffusers key for the UNet and VAE, as diffusers' converter renames them."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    ref = reference_keys("sd_v1_ldm_keys.tsv")
    tagged = {k: torch.full((1,) * max(len(s), 1), float(i)) for i, (k, s) in enumerate(ref.items())}
    names = list(ref)
    out = {}
    for converted in (
        convert_ldm_unet_checkpoint({k: v for k, v in tagged.items() if k.startswith("model.diffusion_model.")}, dict(unet.config)),
        convert_ldm_vae_checkpoint({k: v for k, v in tagged.items() if k.startswith("first_stage_model.")}, dict(vae.config)),
    ):
        for diffusers_key, tensor in converted.items():
            out[names[int(tensor.flatten()[0])]] = diffusers_key
    return out


def sd_ldm_state_dict(model, text_encoder) -> "OrderedDict[str, torch.Tensor]":
    """An sd-v1-x.ckpt-style ``state_dict`` holding ``model``'s UNet/VAE and ``text_encoder``."""
    unet, vae = model.features.unet, model.features.vae
    names = ldm_to_diffusers_names(unet, vae)
    ref = reference_keys("sd_v1_ldm_keys.tsv")
    unet_sd, vae_sd = unet.state_dict(), vae.state_dict()
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    state = OrderedDict()
    for key, shape in ref.items():
        if key.startswith("model.diffusion_model."):
            state[key] = unet_sd[names[key]].clone()
        elif key.startswith("first_stage_model."):
            tensor = vae_sd[names[key]].clone()
            while tensor.ndim < len(shape):  # attention projections are 1x1 convolutions in ldm
                tensor = tensor[..., None]
            state[key] = tensor
        elif key.startswith("cond_stage_model."):
            continue
        else:
            state[key] = betas.float().clone()  # schedule buffers: values irrelevant to ODISE
    for key, value in text_encoder.state_dict().items():
        state[f"cond_stage_model.transformer.text_model.{key}"] = value.clone()
    # present in the public files (an old transformers buffer)
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    return state


def odise_checkpoint(model) -> dict:
    """A detectron2-style ODISE checkpoint {"model": official keys, ...} of ``model``'s head."""
    from napari_odise.checkpoints.key_mapping import ours_to_official

    variant = model.config.variant
    state = OrderedDict((ours_to_official(k, variant), v.clone()) for k, v in model.trainable_state_dict().items())
    classes = 133 if variant == "label" else 1
    state["criterion.empty_weight"] = torch.cat([torch.ones(classes), torch.tensor([0.1])])
    return {"model": state, "iteration": 92187}


def openai_clip_state_dict(clip) -> "OrderedDict[str, torch.Tensor]":
    """OpenAI's layout: open_clip's names, fp16, plus three integers."""
    state = OrderedDict((k, v.clone().half()) for k, v in clip.state_dict().items())
    state["input_resolution"] = torch.tensor(clip.visual.image_size[0])
    state["context_length"] = torch.tensor(clip.context_length)
    state["vocab_size"] = torch.tensor(clip.vocab_size)
    return state


class _Holder(torch.nn.Module):
    """A module tree whose state dict is exactly the given one (for writing a TorchScript archive)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _holder_tree(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    root = _Holder()
    for key, value in state.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, _Holder())
            node = getattr(node, part)
        if value.is_floating_point():
            node.register_parameter(leaf, torch.nn.Parameter(value, requires_grad=False))
        else:
            node.register_buffer(leaf, value)
    return root


def write_openai_clip_archive(clip, path) -> None:
    """A TorchScript archive with OpenAI's ViT-L-14-336px.pt state-dict layout (fp16 + 3 ints)."""
    scripted = torch.jit.script(_holder_tree(openai_clip_state_dict(clip)))
    scripted.save(str(path))


def open_clip_state_dict(clip) -> "OrderedDict[str, torch.Tensor]":
    """What open_clip's ``model.state_dict()`` saves: the same names as OpenAI's, float32, no ints."""
    return OrderedDict((k, v.clone()) for k, v in clip.state_dict().items())


def save_safetensors(state: dict, path) -> None:
    """safetensors wants contiguous tensors that share no memory."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous().clone() for k, v in state.items()}, str(path))


# The VAE mid-block attention as diffusers < 0.14 saved it (the old AttentionBlock's attributes).
_OLD_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def with_old_vae_attention_names(vae_state: dict) -> "OrderedDict[str, torch.Tensor]":
    out = OrderedDict()
    for key, value in vae_state.items():
        for new, old in _OLD_ATTENTION.items():
            if ".mid_block.attentions." in key and f".{new}." in key:
                key = key.replace(f".{new}.", f".{old}.")
        out[key] = value
    return out


def write_diffusers_folder(folder: Path, model, text_encoder, old_vae_names: bool = False) -> Path:
    """unet/, vae/, text_encoder/ as ``StableDiffusionPipeline.save_pretrained`` lays them out."""
    vae_state = model.features.vae.state_dict()
    for sub, filename, state in (
        ("unet", "diffusion_pytorch_model", model.features.unet.state_dict()),
        ("vae", "diffusion_pytorch_model", with_old_vae_attention_names(vae_state) if old_vae_names else vae_state),
        ("text_encoder", "model", {f"text_model.{k}": v for k, v in text_encoder.state_dict().items()}),
    ):
        (folder / sub).mkdir(parents=True)
        save_safetensors(state, folder / sub / f"{filename}.safetensors")
    return folder


# -- official sizes without the bytes ---------------------------------------------------------------
_SAFETENSORS_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}


def write_sparse_safetensors(shapes: dict, path, dtype: torch.dtype = torch.float32) -> Path:
    """A valid safetensors file of official size whose data is a hole in the file system: the
    header (names, shapes) is real, the values are zeros that take no disk space or write time.
    For checks that read names and shapes only (``weights use``); loading it would read zeros."""
    import json
    import struct

    header, offset = {}, 0
    size = torch.empty(0, dtype=dtype).element_size()
    for key, shape in shapes.items():
        nbytes = size * int(torch.Size(shape).numel())
        header[key] = {"dtype": _SAFETENSORS_DTYPE[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path = Path(path)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        handle.truncate(8 + len(encoded) + offset)
    return path


def official_sd_shapes() -> "OrderedDict[str, tuple[int, ...]]":
    """sd-v1-3.ckpt's ``state_dict`` layout (the reference key list), as written by ldm."""
    shapes = reference_keys("sd_v1_ldm_keys.tsv")
    shapes["cond_stage_model.transformer.text_model.embeddings.position_ids"] = (1, 77)
    return shapes


def official_clip_shapes() -> "OrderedDict[str, tuple[int, ...]]":
    """open_clip's ViT-L-14-336 state dict layout (the reference key list)."""
    return reference_keys("clip_vit_l14_336_open_clip_keys.tsv")


def official_size_head(meta_model, variant: str = "label") -> dict:
    """A released-layout ``{"model": ...}`` checkpoint with ``meta_model``'s head shapes and
    uninitialised values (torch.empty: fast to make; ~110 MB at official size)."""
    from napari_odise.checkpoints.key_mapping import ours_to_official

    state = OrderedDict(
        (ours_to_official(k, variant), torch.empty(v.shape, dtype=v.dtype)) for k, v in meta_model.trainable_state_dict().items()
    )
    classes = 133 if variant == "label" else 1
    state["criterion.empty_weight"] = torch.cat([torch.ones(classes), torch.tensor([0.1])])
    return {"model": state, "iteration": 368750}
