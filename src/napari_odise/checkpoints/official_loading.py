"""Build ODISE from the weight files users have: ODISE head + Stable Diffusion v1.x + OpenAI CLIP.

First load: each source file is read without executing code (napari_odise.weights.safe_load),
renamed onto our modules, checked strictly, and written to a safetensors cache keyed by the
source's sha256. Later loads memory-map the cache, so start-up is mostly building modules on the
``meta`` device and assigning tensors. SD's text encoder is only needed once: its output for the
empty caption is cached as a (1, 77, 768) tensor.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from napari_odise.errors import MissingFileError
from napari_odise.weights.importing import ROLES  # load_official argument -> manifest role

from napari_odise.model import clip_encoder
from napari_odise.model.build import build_odise
from .clip_conversion import convert_clip
from napari_odise.model.config import ODISEConfig, get_config
from napari_odise.model.diffusion_features import shared_noise
from .head_loading import convert_head, load_head_into
from napari_odise.model.odise import ODISE
from napari_odise.model.sd_context import build_sd_text_encoder, empty_context

log = logging.getLogger(__name__)


def load_official(
    name: str = "official",
    allow_download: bool = False,
    progress: bool = True,
    cache_dtype: torch.dtype | None = None,
    config: ODISEConfig | None = None,
    dtype: torch.dtype | None = None,
    **sources,
) -> ODISE:
    """The released model ("official" or "official-caption") from the weights folder.

    Files given as ``odise=``, ``sd=``, ``clip=`` are used as they are (any SD v1.x checkpoint or
    diffusers folder, a fine-tuned or re-saved head...), then the user's own files recorded with
    ``napari-odise weights use`` / ``weights import``; the others must be the manifest's files,
    present in the weights folder (or downloaded when ``allow_download``) and verified.
    ``config`` is the model's config when it is not the preset's (a fine-tuned checkpoint's saved
    inference settings): the model is built from it, never changed after. ``dtype`` (fp16/bf16)
    stores the weights in half precision (model/precision.py).
    """
    paths = source_paths(name, sources, allow_download, progress)
    return load_from_files(config or get_config(name), progress=progress, cache_dtype=cache_dtype, dtype=dtype, **paths)


def source_paths(name: str, given: dict, allow_download: bool, progress: bool) -> dict[str, Path]:
    """Role -> file for a released model: the files given, else the user's own (``weights use``,
    or a head ``weights import`` placed under its own name), else the manifest's from the weights
    folder (verified; downloaded when allowed)."""
    from napari_odise.weights import ensure_file, files_for_model, own_files
    from napari_odise.weights.own_files import stand_in

    own = own_files()
    paths = {}
    for weight_file in files_for_model(name):
        role = next(r for r, manifest_role in ROLES.items() if manifest_role == weight_file.role)
        chosen = given.get(role) or stand_in(weight_file, own)
        if chosen is not None:
            paths[role] = Path(chosen)
        else:
            paths[role] = ensure_file(weight_file, allow_download=allow_download, progress=progress)
    return paths


def source_digest(path: Path, progress: bool = False) -> str:
    """sha256 of a weights file; for a diffusers folder, of its weight files' digests."""
    from napari_odise.weights import file_sha256

    path = Path(path)
    if path.is_file():
        return file_sha256(path, progress=progress)
    files = sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        raise MissingFileError(f"{path} is neither a weights file nor a diffusers folder with weights")
    joined = "".join(f"{p.relative_to(path)}:{file_sha256(p)}" for p in files)
    return hashlib.sha256(joined.encode()).hexdigest()


def load_from_files(
    config: ODISEConfig | str,
    odise: str | Path,
    sd: str | Path,
    clip: str | Path,
    progress: bool = True,
    cache_dtype: torch.dtype | None = None,
    use_cache: bool = True,
    dtype: torch.dtype | None = None,
) -> ODISE:
    """ODISE for ``config`` with its head from ``odise``, UNet/VAE/text context from ``sd`` (ldm
    checkpoint or diffusers folder) and CLIP from ``clip`` (OpenAI archive or open_clip state dict).

    ``dtype`` (torch.float16/bfloat16): the frozen weights are read from the cache straight into
    that dtype, one tensor at a time, and the head is stored in it too (model/precision.py)."""
    if isinstance(config, str):
        config = get_config(config)
    dtype = None if dtype == torch.float32 else dtype
    model = build_odise(config, device="meta")
    parts = converted_parts(model, odise, sd, clip, progress, cache_dtype, use_cache, dtype)
    _assign(model, parts, _head_kind(config), dtype)
    if dtype is not None:
        from napari_odise.model.precision import to_precision

        to_precision(model, dtype)
    if use_cache:  # text embeddings by string, on disk, for these CLIP weights (and this dtype)
        from napari_odise.weights.text_store import TextEmbeddingStore

        model.text_cache.store = TextEmbeddingStore.for_clip(source_digest(Path(clip)), dtype=dtype)
    return model.eval()


def prepare_official(name: str = "official", progress: bool = True, config: ODISEConfig | None = None) -> list[Path]:
    """Convert the model's weight files (already in the weights folder) into the cache now, so the
    first start is fast too. Returns the cache files. (``config`` overrides the model's sizes: tests.)"""
    from napari_odise.weights import cache_path

    config = config or get_config(name)
    paths = source_paths(name, {}, allow_download=False, progress=progress)
    model = build_odise(config, device="meta")
    converted_parts(model, progress=progress, cache_dtype=None, use_cache=True, **paths)
    return [
        cache_path(_cache_kind(kind, config), source_digest(paths[role]), _stored_dtype(kind, config, None))
        for kind, role in _sources(config).items()
    ]


def cache_built_model(model: ODISE, odise: str | Path, sd: str | Path, clip: str | Path) -> None:
    """Write a float32 model's weights into the cache as the conversion of these source files
    would, so :func:`load_from_files` on them loads this model: benchmarks load official-size
    random weights the way users load the released ones (memory-mapped, or converted to a dtype)."""
    config = model.config
    digests = {role: source_digest(Path(path)) for role, path in (("odise", odise), ("sd", sd), ("clip", clip))}
    parts = {
        "unet": model.features.unet.state_dict(),
        "vae": model.features.vae.state_dict(),
        "sd_context": {"context": model.empty_context.float()},
        "clip": model.clip.state_dict(),
        _head_kind(config): model.trainable_state_dict(),
    }
    for kind, role in _sources(config).items():
        _write(parts, (kind,), config, digests[role], None, use_cache=True)


def _head_kind(config: ODISEConfig) -> str:
    return f"odise_{config.variant}"


def _sources(config: ODISEConfig) -> dict[str, str]:
    """Cache kind -> the source file role it is converted from."""
    return {"unet": "sd", "vae": "sd", "sd_context": "sd", "clip": "clip", _head_kind(config): "odise"}


def _stored_dtype(kind: str, config: ODISEConfig, cache_dtype: torch.dtype | None) -> torch.dtype | None:
    """The dtype a part is cached in; reads and writes both ask here, or the names disagree and
    every start is a cache miss. The head (28M values, the trained part) keeps the checkpoint's
    dtype and the empty-caption context (1x77x768, which fp16 visibly shifts) stays float32."""
    if kind in (_head_kind(config), "sd_context"):
        return None
    return cache_dtype


def converted_parts(model: ODISE, odise, sd, clip, progress, cache_dtype, use_cache, dtype=None) -> dict:
    """Every part's tensors under our names: from the cache, else converted (and cached).

    With ``dtype``, the UNet, VAE and CLIP tensors read from the cache come in that dtype."""
    config = model.config
    sources = _sources(config)
    files = {"sd": Path(sd), "clip": Path(clip), "odise": Path(odise)}
    digests = {role: source_digest(path, progress) for role, path in files.items()}
    parts = {kind: None for kind in sources}
    if use_cache:
        for kind, role in sources.items():
            parts[kind] = _read_cached(kind, config, digests[role], cache_dtype, dtype)
    if any(parts[k] is None for k in ("unet", "vae", "sd_context")):
        parts.update(_convert_sd(model, config, files["sd"]))
        _write(parts, ("unet", "vae", "sd_context"), config, digests["sd"], cache_dtype, use_cache, dtype)
    if parts["clip"] is None:
        parts["clip"] = _convert_clip(model, files["clip"])
        _write(parts, ("clip",), config, digests["clip"], cache_dtype, use_cache, dtype)
    head_kind = _head_kind(config)
    if parts[head_kind] is None:
        parts[head_kind] = _convert_head(model, files["odise"])
        _write(parts, (head_kind,), config, digests["odise"], cache_dtype, use_cache, dtype)
    return parts


def _cache_kind(kind: str, config: ODISEConfig) -> str:
    """Cache files are per config: the tiny test models must never meet the official ones."""
    return kind if config.name in ("official", "official-caption") else f"{config.name}-{kind}"


def _read_cached(kind: str, config: ODISEConfig, digest: str, cache_dtype, dtype=None) -> dict | None:
    from napari_odise.weights import cache_path, read_cache

    path = cache_path(_cache_kind(kind, config), digest, _stored_dtype(kind, config, cache_dtype))
    half = dtype if kind in ("unet", "vae", "clip") else None  # the head is cast once loaded; the context stays fp32
    return read_cache(path, source_sha256=digest, dtype=half)


def _write(parts: dict, kinds, config: ODISEConfig, digest: str, cache_dtype, use_cache: bool, dtype=None) -> None:
    """Cache ``parts[kind]`` for each kind, then read it back from the file just written: the first
    start gives the same model as the starts that read the cache (same rounding, and weights
    memory-mapped from the file instead of the converted copies held in memory)."""
    if not use_cache:
        return
    from napari_odise.weights import cache_path, write_cache

    for kind in kinds:
        name = _cache_kind(kind, config)
        path = cache_path(name, digest, _stored_dtype(kind, config, cache_dtype))
        write_cache(parts[kind], path, {"kind": name}, source_sha256=digest, dtype=_stored_dtype(kind, config, cache_dtype))
        converted = parts[kind]
        parts[kind] = _read_cached(kind, config, digest, cache_dtype, dtype)
        if parts[kind] is None:  # the cache could not be written or read back
            parts[kind] = _rounded(converted, _stored_dtype(kind, config, cache_dtype))


def _rounded(state: dict, dtype) -> dict:
    if dtype is None:
        return state
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def _convert_sd(model: ODISE, config: ODISEConfig, source: Path) -> dict:
    from napari_odise.weights import load_checkpoint

    from .sd_conversion import convert_ldm, load_diffusers_folder

    log.info("converting Stable Diffusion weights from %s (first start only)", source)
    with torch.device("meta"):
        text_shapes = build_sd_text_encoder(config.sd_text)
    unet, vae = model.features.unet, model.features.vae
    if source.is_dir():
        weights = load_diffusers_folder(source, unet, vae, text_shapes)
    else:
        weights = convert_ldm(load_checkpoint(source).state_dict, unet, vae, text_shapes, str(source))
    text_encoder = build_sd_text_encoder(config.sd_text)
    text_state = {k: v.float() for k, v in weights.text_encoder.items()}
    text_encoder.load_state_dict(text_state, strict=False)
    missing = set(text_encoder.state_dict()) - set(text_state) - {"embeddings.position_ids"}
    if missing:  # convert_ldm checked this already; a diffusers folder too
        raise ValueError(f"{source}: text encoder tensors missing: {sorted(missing)[:5]}")
    context = empty_context(text_encoder).float()  # cached as float32 whatever the cache dtype
    return {"unet": weights.unet, "vae": weights.vae, "sd_context": {"context": context}}


def _convert_clip(model: ODISE, source: Path) -> dict:
    from napari_odise.weights import load_checkpoint

    return convert_clip(load_checkpoint(source).state_dict, model.clip, str(source))


def _convert_head(model: ODISE, source: Path) -> dict:
    from napari_odise.weights import load_checkpoint

    return convert_head(load_checkpoint(source).state_dict, model, str(source))


def _float32(state: dict) -> dict:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _in_dtype(state: dict, dtype) -> dict:
    """float32, or ``dtype`` when given: converted a tensor at a time, each source dropped as it goes."""
    if dtype is None:
        return _float32(state)
    out = {}
    for key in list(state):
        value = state.pop(key)
        out[key] = value.to(dtype) if value.is_floating_point() else value
    return out


def _assign(model: ODISE, parts: dict, head_kind: str, dtype=None) -> None:
    model.features.unet.load_state_dict(_in_dtype(parts["unet"], dtype), strict=True, assign=True)
    model.features.vae.load_state_dict(_in_dtype(parts["vae"], dtype), strict=True, assign=True)
    model.clip.load_state_dict(_in_dtype(parts["clip"], dtype), strict=True, assign=True)
    load_head_into(model, _float32(parts[head_kind]), assign=True)
    model.empty_context = parts["sd_context"]["context"].float().clone()
    config = model.config
    model.features.noise = shared_noise(config.noise_seed, config.noise_size, config.vae.latent_channels)
    # the one non-persistent buffer of CLIP: the text transformer's causal mask
    model.clip.attn_mask = clip_encoder.causal_mask(model.clip.context_length)
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise RuntimeError(f"weights missing after loading: {leftover[:5]}")
    for module in (model.clip, model.features):
        for p in module.parameters():
            p.requires_grad_(False)
