"""Official-layout files -> a working model, through the same functions users call.

Synthetic checkpoints for the tiny config are written in each official layout (SD's ldm
``state_dict``, detectron2's ``{"model": ...}``, OpenAI's TorchScript CLIP archive) from a
"source" model; loading them must reproduce that model exactly (CLIP up to OpenAI's fp16).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoint_factory import (
    odise_checkpoint,
    open_clip_state_dict,
    reference_keys,
    save_safetensors,
    sd_ldm_state_dict,
    write_diffusers_folder,
    write_openai_clip_archive,
)
from conftest import FAST_GEOMETRY, random_image
from napari_odise.model.build import build_odise
from napari_odise.model.config import get_config, official_config
from napari_odise.checkpoints.official_loading import load_from_files, load_official
from napari_odise.model.sd_context import build_sd_text_encoder
from napari_odise.checkpoints.weight_errors import WeightsMismatchError


def tiny_config(name="tiny", **changes):
    from dataclasses import replace

    config = get_config(name)
    return replace(config, inference=config.inference.replace(**FAST_GEOMETRY), **changes)


@pytest.fixture(scope="module")
def source():
    """A tiny model with its own random weights (seed 7) and its SD text encoder."""
    config = tiny_config(init_seed=7)
    torch.manual_seed(7)
    text_encoder = build_sd_text_encoder(config.sd_text)
    model = build_odise(config, sd_text_encoder=text_encoder)
    # train-like head values, so a wrong mapping cannot hide behind zero-initialised gates
    with torch.no_grad():
        for p in model.trainable_state_dict().values():
            p.add_(torch.randn_like(p) * 0.05)
    return model, text_encoder


@pytest.fixture(scope="module")
def files(source, tmp_path_factory):
    model, text_encoder = source
    folder = tmp_path_factory.mktemp("official_layout")
    paths = {"sd": folder / "sd-v1-3.ckpt", "odise": folder / "odise_label_coco_50e.pth", "clip": folder / "ViT-L-14-336px.pt"}
    torch.save({"state_dict": sd_ldm_state_dict(model, text_encoder), "global_step": 470000}, paths["sd"])
    torch.save(odise_checkpoint(model), paths["odise"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_openai_clip_archive(model.clip, paths["clip"])
    return paths


def assert_same_model(loaded, source_model, clip_fp16=True):
    """Equal tensors everywhere; CLIP rounded through fp16 when it came from OpenAI's archive."""
    for name in ("unet", "vae"):
        a, b = getattr(loaded.features, name).state_dict(), getattr(source_model.features, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key, value in source_model.trainable_state_dict().items():
        assert torch.equal(loaded.trainable_state_dict()[key], value), key
    clip_a, clip_b = loaded.clip.state_dict(), source_model.clip.state_dict()
    assert clip_a.keys() == clip_b.keys()
    for key in clip_b:
        expected = clip_b[key].half().float() if clip_fp16 else clip_b[key]
        assert torch.equal(clip_a[key], expected), key
    torch.testing.assert_close(loaded.empty_context, source_model.empty_context, rtol=0, atol=0)


def test_official_layouts_load_into_the_model(files, source):
    model = load_from_files(tiny_config(), progress=False, **files)
    assert_same_model(model, source[0])
    image = random_image(64, 96, seed=11)
    vocab = model.embed_vocabulary([["cat"], ["sky"]], [True, False], [True, True])
    encoded = model.encode(image)
    assert torch.isfinite(encoded.mask_logits).all()
    assert model.classify(encoded, vocab).shape == (16, 3)
    # text embeddings are kept on disk for these CLIP weights: a restart embeds nothing again
    from napari_odise.checkpoints.official_loading import source_digest
    from napari_odise.weights.text_store import store_path

    assert model.text_cache.store.path == store_path(source_digest(Path(files["clip"])))
    restarted = load_from_files(tiny_config(), progress=False, **files)
    restarted.embed_vocabulary([["cat"], ["sky"]], [True, False], [True, True])
    assert restarted.text_cache.encoded_strings == 0


def test_second_start_reads_the_cache_without_converting(files, source, monkeypatch):
    load_from_files(tiny_config(), progress=False, **files)
    from napari_odise.checkpoints import official_loading

    for step in ("_convert_sd", "_convert_clip", "_convert_head"):
        monkeypatch.setattr(official_loading, step, lambda *a, **k: pytest.fail("converted again"))
    assert_same_model(load_from_files(tiny_config(), progress=False, **files), source[0])


def test_float16_cache_is_hit_on_the_second_start(files, source, monkeypatch, _isolated_home):
    """fp16 halves the UNet/VAE/CLIP caches; the head and the empty-caption context stay float32."""
    from safetensors import safe_open

    from napari_odise.checkpoints import official_loading

    first = load_from_files(tiny_config(), progress=False, cache_dtype=torch.float16, **files)
    for step in ("_convert_sd", "_convert_clip", "_convert_head"):
        monkeypatch.setattr(official_loading, step, lambda *a, **k: pytest.fail("converted again"))
    second = load_from_files(tiny_config(), progress=False, cache_dtype=torch.float16, **files)

    cache = _isolated_home / "cache"
    suffixes = {p.name.split("-")[1]: p.name.rsplit("-", 1)[1] for p in cache.glob("tiny-*.safetensors")}
    assert suffixes == {
        "unet": "float16.safetensors", "vae": "float16.safetensors", "clip": "float16.safetensors",
        "odise_label": "original.safetensors", "sd_context": "original.safetensors",
    }
    with safe_open(str(next(cache.glob("tiny-sd_context-*"))), "pt") as handle:
        assert handle.get_slice("context").get_dtype() == "F32"
    model = source[0]
    torch.testing.assert_close(second.empty_context, model.empty_context, rtol=0, atol=0)
    for key, value in model.trainable_state_dict().items():
        assert torch.equal(second.trainable_state_dict()[key], value), key
    unet = model.features.unet.state_dict()
    assert all(torch.equal(v, unet[k].half().float()) for k, v in second.features.unet.state_dict().items())
    # the converting start gives the model the cache gives
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_damaged_cache_is_rebuilt(files, source, _isolated_home):
    load_from_files(tiny_config(), progress=False, **files)
    unet_cache = next((_isolated_home / "cache").glob("tiny-unet-*.safetensors"))
    data = bytearray(unet_cache.read_bytes())
    data[-100:] = bytes(100)  # zero the last tensor bytes
    unet_cache.write_bytes(bytes(data[:-7]))  # and truncate
    assert_same_model(load_from_files(tiny_config(), progress=False, **files), source[0])
    assert unet_cache.exists() and unet_cache.stat().st_size == len(data)


def test_diffusers_folder_for_stable_diffusion(files, source, tmp_path):
    model, text_encoder = source
    folder = write_diffusers_folder(tmp_path / "sd", model, text_encoder)
    loaded = load_from_files(tiny_config(), odise=files["odise"], sd=folder, clip=files["clip"], progress=False)
    assert_same_model(loaded, model)


def test_diffusers_folder_with_old_vae_attention_names(files, source, tmp_path):
    """Folders saved by diffusers < 0.14 call the VAE attention query/key/value/proj_attn."""
    from safetensors import safe_open

    model, text_encoder = source
    folder = write_diffusers_folder(tmp_path / "sd", model, text_encoder, old_vae_names=True)
    with safe_open(str(folder / "vae" / "diffusion_pytorch_model.safetensors"), "pt") as handle:
        names = set(handle.keys())
    assert "decoder.mid_block.attentions.0.proj_attn.weight" in names
    assert not any(".to_q." in n or ".to_out." in n for n in names)
    loaded = load_from_files(tiny_config(), odise=files["odise"], sd=folder, clip=files["clip"], progress=False)
    assert_same_model(loaded, model)


def test_old_attention_names_are_renamed_only_where_the_current_name_is_missing():
    """A file with both names keeps the old key, so the strict check reports it as unexpected."""
    from napari_odise.checkpoints.sd_conversion import rename_deprecated_attention

    expected = {"mid.attentions.0.to_q.weight": (2, 2), "mid.attentions.0.to_out.0.bias": (2,)}
    old = {"mid.attentions.0.query.weight": torch.ones(2, 2), "mid.attentions.0.proj_attn.bias": torch.ones(2)}
    assert set(rename_deprecated_attention(old, expected)) == set(expected)
    both = {**old, "mid.attentions.0.to_q.weight": torch.zeros(2, 2)}
    renamed = rename_deprecated_attention(both, expected)
    assert set(renamed) == {
        "mid.attentions.0.query.weight", "mid.attentions.0.to_q.weight", "mid.attentions.0.to_out.0.bias"
    }
    assert torch.equal(renamed["mid.attentions.0.to_q.weight"], torch.zeros(2, 2))
    elsewhere = {"unet.query.weight": torch.ones(2, 2)}  # not a name the model has: left alone
    assert set(rename_deprecated_attention(elsewhere, expected)) == {"unet.query.weight"}


def test_stable_diffusion_ldm_layout_as_safetensors(files, source, tmp_path):
    model, text_encoder = source
    path = tmp_path / "sd-v1-3.safetensors"
    save_safetensors(sd_ldm_state_dict(model, text_encoder), path)
    loaded = load_from_files(tiny_config(), odise=files["odise"], sd=path, clip=files["clip"], progress=False)
    assert_same_model(loaded, model)


@pytest.mark.parametrize("layout", ["open_clip.bin", "open_clip.safetensors", "dataparallel.bin"])
def test_clip_as_an_open_clip_state_dict(files, source, tmp_path, layout):
    """open_clip state dicts are float32: CLIP must come back bit for bit (no fp16 rounding)."""
    model = source[0]
    state = open_clip_state_dict(model.clip)
    assert set(state) <= set(reference_keys("clip_vit_l14_336_open_clip_keys.tsv"))
    path = tmp_path / f"ViT-L-14-336.{layout}"
    if layout.endswith(".safetensors"):
        save_safetensors(state, path)
    elif layout.startswith("dataparallel"):  # open_clip's training checkpoints
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        torch.save(state, path)
    loaded = load_from_files(tiny_config(), odise=files["odise"], sd=files["sd"], clip=path, progress=False)
    assert_same_model(loaded, model, clip_fp16=False)
    assert not torch.equal(loaded.clip.visual.proj, model.clip.visual.proj.half().float())  # fp32 kept


def test_caption_checkpoint_loads_into_the_caption_model(files, tmp_path):
    caption = build_odise(tiny_config("tiny-caption", init_seed=5))
    with torch.no_grad():
        for p in caption.trainable_state_dict().values():
            p.add_(torch.randn_like(p) * 0.05)
    checkpoint = odise_checkpoint(caption)
    # the official caption file's names (the tiny model has fewer layers: a subset)
    assert set(checkpoint["model"]) <= set(reference_keys("odise_caption_coco_50e.model_keys.tsv"))
    assert {"word_head.text_proj.weight", "sem_seg_head.predictor.class_embed.weight"} <= set(checkpoint["model"])
    path = tmp_path / "odise_caption_coco_50e-853cc971.pth"
    torch.save(checkpoint, path)
    config = tiny_config("tiny-caption")
    loaded = load_from_files(config, odise=path, sd=files["sd"], clip=files["clip"], progress=False)
    assert loaded.config.variant == "caption"
    expected, got = caption.trainable_state_dict(), loaded.trainable_state_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_missing_and_unexpected_keys_are_named_with_the_file(files, tmp_path):
    state = torch.load(files["sd"], weights_only=True)["state_dict"]
    broken = dict(state)
    del broken["model.diffusion_model.output_blocks.5.1.proj_in.weight"]
    broken["model.diffusion_model.extra_layer.weight"] = torch.zeros(2)
    broken["some_other_model.weight"] = torch.zeros(2)
    path = tmp_path / "broken.ckpt"
    torch.save({"state_dict": broken}, path)
    with pytest.raises(WeightsMismatchError) as error:
        load_from_files(tiny_config(), odise=files["odise"], sd=path, clip=files["clip"], progress=False)
    assert str(path) in str(error.value) and "some_other_model.weight" in str(error.value)
    del broken["some_other_model.weight"]
    torch.save({"state_dict": broken}, path)
    with pytest.raises(WeightsMismatchError, match="missing 1 tensors") as error:
        load_from_files(tiny_config(), odise=files["odise"], sd=path, clip=files["clip"], progress=False)
    assert "up_blocks.1.attentions.2.proj_in.weight" in str(error.value)


def test_wrong_head_shapes_and_names(files, tmp_path):
    checkpoint = torch.load(files["odise"], weights_only=True)
    checkpoint["model"]["category_head.text_proj.weight"] = torch.zeros(3, 3)
    checkpoint["model"]["sem_seg_head.unknown.weight"] = torch.zeros(1)
    path = tmp_path / "head.pth"
    torch.save(checkpoint, path)
    with pytest.raises(WeightsMismatchError) as error:
        load_from_files(tiny_config(), odise=path, sd=files["sd"], clip=files["clip"], progress=False)
    message = str(error.value)
    assert "category_head.text_proj.weight (3, 3) != expected (32, 32)" in message
    assert "sem_seg_head.unknown.weight" in message and str(path) in message


def test_the_caption_checkpoint_does_not_fit_the_label_model(files, tmp_path):
    caption = build_odise(get_config("tiny-caption"))
    path = tmp_path / "caption.pth"
    torch.save(odise_checkpoint(caption), path)
    with pytest.raises(WeightsMismatchError, match="word_head.text_proj"):
        load_from_files(tiny_config(), odise=path, sd=files["sd"], clip=files["clip"], progress=False)


def test_full_size_sd_layout_maps_onto_the_official_model():
    """Every key of sd-v1-3.ckpt's layout (reference list) lands on the official UNet/VAE/text encoder."""
    from napari_odise.checkpoints.sd_conversion import convert_ldm

    model = build_odise("official", device="meta")
    with torch.device("meta"):
        text_encoder = build_sd_text_encoder(official_config().sd_text)
    state = {k: torch.empty(s, device="meta") for k, s in reference_keys("sd_v1_ldm_keys.tsv").items()}
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.empty(1, 77, device="meta")
    weights = convert_ldm(state, model.features.unet, model.features.vae, text_encoder, "reference")
    assert (len(weights.unet), len(weights.vae), len(weights.text_encoder)) == (686, 248, 196)


def test_full_size_clip_layout_maps_onto_the_official_clip():
    from napari_odise.checkpoints.clip_conversion import convert_clip

    model = build_odise("official", device="meta")
    ref = reference_keys("clip_vit_l14_336_open_clip_keys.tsv")
    state = {k: torch.empty(s, device="meta") for k, s in ref.items()}
    state.update({k: torch.tensor(0) for k in ("input_resolution", "context_length", "vocab_size")})
    assert set(convert_clip(state, model.clip, "reference")) == set(model.clip.state_dict())


def test_missing_official_files_say_where_to_put_them(_isolated_home):
    from napari_odise.weights import WeightsUnavailableError

    with pytest.raises(WeightsUnavailableError) as error:
        load_official("official", progress=False)
    message = str(error.value)
    assert str(_isolated_home / "weights") in message
    assert "odise_label_coco_50e-b67d2efc.pth" in message or "sd-v1-3.ckpt" in message


def test_a_finetuned_checkpoint_loads_by_path(tmp_path):
    """The fine-tuning output: a head in the official layout + the config beside it; the tiny
    base model's frozen parts are rebuilt from its seed."""
    from napari_odise import Predictor
    from napari_odise.checkpoints.loading import finetuned_config_path

    model = build_odise(tiny_config(init_seed=3))
    with torch.no_grad():
        for p in model.trainable_state_dict().values():
            p.add_(0.05)
    path = tmp_path / "finetuned.pth"
    torch.save(odise_checkpoint(model), path)
    finetuned_config_path(path).write_text(json.dumps({"config": model.config.to_dict(), "base_model": "tiny"}))
    predictor = Predictor.from_pretrained(path, device="cpu")
    for key, value in model.trainable_state_dict().items():
        assert torch.equal(predictor.model.trainable_state_dict()[key], value)
    image = random_image(64, 64, seed=2)
    np.testing.assert_array_equal(predictor.model.encode(image).mask_logits, model.encode(image).mask_logits)


def _manifest_of(files, monkeypatch, placed=("odise", "sd", "clip")):
    """A manifest describing ``files`` (tiny synthetic checkpoints); ``placed`` go in the weights folder."""
    import shutil

    from napari_odise.weights import manifest, sha256_file, weights_dir

    entries = []
    for name, role, key in (("label", "odise", "odise"), ("sd", "stable_diffusion", "sd"), ("clip", "clip", "clip")):
        entries.append(
            {"name": name, "role": role, "filename": files[key].name, "url": f"https://example.org/{name}",
             "licence": "test", "sha256": sha256_file(files[key])}
        )
        if key in placed:
            weights_dir().mkdir(parents=True, exist_ok=True)
            shutil.copy(files[key], weights_dir() / files[key].name)
    test_manifest = manifest.Manifest.from_dict({"format": 1, "files": entries, "models": {"official": ["label", "sd", "clip"]}})
    monkeypatch.setattr(manifest, "load_manifest", lambda: test_manifest)


def test_own_sd_and_clip_files_stand_in_for_the_manifests(files, source, monkeypatch, tmp_path):
    """`napari-odise weights use`: e.g. SD as a diffusers folder and CLIP as open_clip's state dict."""
    from napari_odise.checkpoints import official_loading
    from napari_odise.weights import WeightsUnavailableError, forget_own_files, use_own_files, weights_dir

    _manifest_of(files, monkeypatch, placed=("odise",))
    use_own_files(sd=files["sd"], clip=files["clip"], check=False)  # tiny files: not the official shapes
    paths = official_loading.source_paths("official", {}, allow_download=False, progress=False)
    assert paths == {"odise": weights_dir() / files["odise"].name, "sd": files["sd"].resolve(), "clip": files["clip"].resolve()}
    caches = official_loading.prepare_official("official", progress=False, config=tiny_config())
    assert len(caches) == 5 and all(p.is_file() for p in caches)
    assert_same_model(load_from_files(tiny_config(), progress=False, **paths), source[0])
    forget_own_files("clip")
    with pytest.raises(WeightsUnavailableError, match=files["clip"].name):  # back to the manifest's file
        official_loading.source_paths("official", {}, allow_download=False, progress=False)


def test_prepare_official_fills_the_cache_from_the_weights_folder(files, source, monkeypatch):
    """What `napari-odise weights import` runs after placing the files (tiny sizes here)."""
    from napari_odise.checkpoints import official_loading
    from napari_odise.weights import weights_dir

    _manifest_of(files, monkeypatch)
    caches = official_loading.prepare_official("official", progress=False, config=tiny_config())
    assert len(caches) == 5 and all(p.is_file() for p in caches)
    for step in ("_convert_sd", "_convert_clip", "_convert_head"):
        monkeypatch.setattr(official_loading, step, lambda *a, **k: pytest.fail("converted again"))
    model = official_loading.load_from_files(
        tiny_config(), progress=False, **{k: weights_dir() / p.name for k, p in files.items()}
    )
    assert_same_model(model, source[0])


def test_bf16_start_reads_the_float32_cache_straight_into_bf16(files, source, monkeypatch, _isolated_home):
    """precision="bf16": the float32 cache is read a tensor at a time into bfloat16 (never the whole
    float32 model), the head is stored in bf16 but for the category head, text embeddings get their own store."""
    from safetensors import torch as safetensors_torch

    from napari_odise.model.precision import half_modules

    load_from_files(tiny_config(), progress=False, **files)  # writes the float32 cache
    real_load_file = safetensors_torch.load_file
    mapped = []
    monkeypatch.setattr(safetensors_torch, "load_file", lambda path, **k: mapped.append(Path(path).name) or real_load_file(path, **k))
    model = load_from_files(tiny_config(), progress=False, dtype=torch.bfloat16, **files)
    assert sorted(name.split("-")[1] for name in mapped) == ["odise_label", "sd_context"]  # small: read as stored
    reference = load_from_files(tiny_config(), progress=False, **files)
    for module, expected in zip(half_modules(model), half_modules(reference)):
        a, b = module.state_dict(), expected.state_dict()
        assert all(a[k].dtype == torch.bfloat16 and torch.equal(a[k], b[k].to(torch.bfloat16)) for k in b if b[k].is_floating_point())
    assert model.category_head.text_proj.weight.dtype == torch.float32
    assert model.empty_context.dtype == torch.float32
    assert model.text_cache.store.path.name.endswith("-bfloat16.sqlite")


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            start, end = line.split()[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux's /proc/self/maps")
def test_the_first_start_uses_the_memory_mapped_cache_it_just_wrote(files, source):
    """Converting writes the cache; the model then holds the file's pages, as later starts do,
    not the converted copies (which would stay in ordinary memory for the whole session)."""
    from napari_odise.checkpoints.official_loading import _cache_kind, source_digest
    from napari_odise.weights import cache_path

    model = load_from_files(tiny_config(), progress=False, **files)
    assert_same_model(model, source[0])
    unet_file = cache_path(_cache_kind("unet", model.config), source_digest(Path(files["sd"])), None)
    ranges = _mapped_ranges(unet_file.resolve())
    assert ranges, f"{unet_file} is not mapped"
    weights = [p for p in model.features.unet.parameters() if p.numel() > 0]
    assert weights and all(any(a <= p.data_ptr() < b for a, b in ranges) for p in weights)
