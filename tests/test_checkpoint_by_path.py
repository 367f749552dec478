"""Any ODISE head in the official layout loads by path, without a config beside it.

Heads are written as the release writes them (``{"model": state_dict}``, with or without the
state dict's ``_metadata``) or as a bare state dict, at the tiny size (then they sit on the tiny
model's seeded random frozen parts, which is what makes this testable here) and at the official
size from the meta model's shapes (only what does not need Stable Diffusion or CLIP is run).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from checkpoint_factory import odise_checkpoint, official_size_head
from conftest import FAST_GEOMETRY
from napari_odise.checkpoints import official_loading
from napari_odise.checkpoints.loading import finetuned_config_path, load_model, model_config
from napari_odise.checkpoints.weight_errors import WeightsMismatchError
from napari_odise.errors import UserError
from napari_odise.model.build import build_odise
from napari_odise.model.config import get_config


def perturbed(name: str, seed: int = 5):
    """A model of preset ``name`` whose head differs from the seeded one (as a trained head would)."""
    model = build_odise(get_config(name))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.trainable_state_dict().values():
            value.add_(torch.randn(value.shape, generator=generator) * 0.05)
    return model


def write_head(model, path: Path, layout: str = "release") -> Path:
    """The head of ``model`` in the official layout: "release" ({"model": ...}), "metadata" (the
    same with the ``_metadata`` a module's state_dict() carries) or "bare" (the state dict alone)."""
    state = odise_checkpoint(model)["model"]
    if layout == "metadata":
        state = OrderedDict(state)
        state._metadata = OrderedDict({"": {"version": 1}, "sem_seg_head": {"version": 1}})
    torch.save(state if layout == "bare" else {"model": state, "iteration": 1234}, path)
    return path


@pytest.fixture(scope="module")
def tiny_head(tmp_path_factory):
    model = perturbed("tiny")
    return model, write_head(model, tmp_path_factory.mktemp("heads") / "my_head.pth")


@pytest.mark.parametrize("layout", ["release", "metadata", "bare"])
def test_a_head_without_config_loads_by_path_with_the_files_tensors(layout, tmp_path):
    from napari_odise import Predictor

    model = perturbed("tiny", seed=len(layout))
    path = write_head(model, tmp_path / "head.pth", layout)
    assert not finetuned_config_path(path).exists()
    predictor = Predictor.from_pretrained(path, device="cpu")
    loaded = predictor.model.trainable_state_dict()
    expected = model.trainable_state_dict()
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    # the frozen parts are the tiny model's seeded random ones
    seeded = build_odise(get_config("tiny"))
    for name in ("unet", "vae"):
        a, b = getattr(predictor.model.features, name).state_dict(), getattr(seeded.features, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in b)
    assert all(torch.equal(predictor.model.clip.state_dict()[k], v) for k, v in seeded.clip.state_dict().items())
    assert predictor.model.config == get_config("tiny")  # built with the preset's settings, never changed after
    assert predictor.variant == "label"


def test_the_release_is_recognised_by_its_hash_but_the_hash_is_not_required(tiny_head, monkeypatch, caplog):
    from napari_odise.weights import manifest, sha256_file

    model, path = tiny_head
    with caplog.at_level(logging.INFO, logger="napari_odise.checkpoints.loading"):
        load_model(path)
    assert "not a released file" in caplog.text and "tiny size" in caplog.text
    caplog.clear()
    entry = {"name": "label", "role": "odise", "filename": "odise_label-x.pth", "url": "https://example.org/x",
             "licence": "test", "sha256_prefix": sha256_file(path)[:8]}
    test_manifest = manifest.Manifest.from_dict({"format": 1, "files": [entry], "models": {"official": ["label"]}})
    monkeypatch.setattr(manifest, "load_manifest", lambda: test_manifest)
    with caplog.at_level(logging.INFO, logger="napari_odise.checkpoints.loading"):
        load_model(path)
    assert "is the released odise_label-x.pth" in caplog.text


def test_a_caption_head_is_detected_as_caption(tmp_path):
    path = write_head(perturbed("tiny"), tmp_path / "head.pth")
    assert model_config(path).variant == "label"
    model = perturbed("tiny-caption")
    write_head(model, path)  # the same path rewritten: described again
    assert model_config(path) == get_config("tiny-caption")
    loaded = load_model(path)
    assert loaded.config.variant == "caption" and loaded.category_head.null_embed is None
    assert all(torch.equal(loaded.trainable_state_dict()[k], v) for k, v in model.trainable_state_dict().items())


def test_a_head_with_one_wrong_shape_is_refused_naming_the_key_and_the_file(tiny_head, tmp_path):
    from napari_odise import Predictor

    checkpoint = torch.load(tiny_head[1], weights_only=True)
    key = "sem_seg_head.predictor.transformer_self_attention_layers.1.norm.weight"
    assert key in checkpoint["model"]
    checkpoint["model"][key] = torch.zeros(7)
    path = tmp_path / "bad.pth"
    torch.save(checkpoint, path)
    assert model_config(path).name == "tiny"  # the size is still recognisable from the signature
    with pytest.raises(WeightsMismatchError) as error:
        Predictor.from_pretrained(path, device="cpu")
    message = str(error.value)
    assert f"{key} (7,) != expected (32,)" in message and str(path) in message
    assert isinstance(error.value, UserError)


def test_a_head_of_an_unknown_size_is_refused_naming_the_shapes(tiny_head, tmp_path):
    checkpoint = torch.load(tiny_head[1], weights_only=True)
    checkpoint["model"]["sem_seg_head.predictor.query_feat.weight"] = torch.zeros(50, 32)
    path = tmp_path / "other.pth"
    torch.save(checkpoint, path)
    with pytest.raises(WeightsMismatchError, match=r"query_feat.weight \(50, 32\) \(official: \(100, 256\)\)"):
        model_config(path)


def test_files_that_are_not_heads_and_unknown_names_are_user_errors(tmp_path):
    not_a_head = tmp_path / "clip.pth"
    torch.save({"visual.proj": torch.zeros(2, 2)}, not_a_head)
    with pytest.raises(UserError, match="no category_head"):
        model_config(not_a_head)
    with pytest.raises(UserError, match="unknown model 'offical'"):
        load_model("offical")
    with pytest.raises(UserError, match="no checkpoint at"):
        model_config(tmp_path / "absent.pth")
    with pytest.raises(UserError, match="is a folder"):
        model_config(tmp_path)


def test_model_config_of_an_official_size_head_needs_no_sd_or_clip(official_meta_model, tmp_path, monkeypatch):
    """The head written from the official meta model's shapes (uninitialised values, ~110 MB)."""
    path = tmp_path / "odise_label_resaved.pth"
    torch.save(official_size_head(official_meta_model), path)
    for reader in ("load_official", "load_from_files", "_convert_sd", "_convert_clip"):
        monkeypatch.setattr(official_loading, reader, lambda *a, **k: pytest.fail("SD/CLIP were loaded"))
    config = model_config(path)
    assert (config.name, config.variant) == ("official", "label")
    assert config == get_config("official")


def test_an_official_size_head_loads_on_the_official_sd_and_clip_in_place_of_the_manifests(
    official_meta_model, tmp_path, monkeypatch
):
    path = tmp_path / "mirror.pth"
    torch.save(official_size_head(official_meta_model), path)
    calls = []
    monkeypatch.setattr(official_loading, "load_official", lambda name, **kw: calls.append((name, kw)) or "model")
    assert load_model(path, progress=False) == "model"
    (name, options), = calls
    assert name == "official" and options["odise"] == path and options["progress"] is False
    assert options["config"] == get_config("official")


def test_a_finetuned_checkpoint_is_built_with_its_saved_settings(tmp_path):
    """No settings are assigned to a built model: the saved ones are in the config it is built from."""
    from dataclasses import replace

    model = perturbed("tiny")
    config = replace(model.config, inference=model.config.inference.replace(short_edge=256, alpha=0.4))
    path = write_head(model, tmp_path / "model.pth")
    finetuned_config_path(path).write_text(json.dumps({"config": config.to_dict(), "base_model": "tiny"}))
    assert model_config(path) == config
    loaded = load_model(path)
    assert loaded.config == config
    assert all(torch.equal(loaded.trainable_state_dict()[k], v) for k, v in model.trainable_state_dict().items())
    finetuned_config_path(path).write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        model_config(path)


def test_segment_command_with_a_head_path(tmp_path):
    """`napari-odise segment IMG --model HEAD.pth` in a fresh process: the head is the tiny model's
    own (seeded) head re-saved in the official layout, so the result must be the tiny model's."""
    import skimage.data

    from napari_odise import Predictor, Vocabulary
    from napari_odise.io import read_panoptic_png

    head = write_head(build_odise(get_config("tiny")), tmp_path / "resaved_head.pth")
    image = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((160, 128)))
    Image.fromarray(image).save(tmp_path / "astronaut.png")
    out = tmp_path / "out"
    geometry = [f"--{k.replace('_', '-')}={v}" for k, v in FAST_GEOMETRY.items()]
    env = {**os.environ, "NAPARI_ODISE_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "napari_odise.cli", "segment", str(tmp_path / "astronaut.png"),
               "--model", str(head), "--out", str(out), "--device", "cpu", "--quiet", *geometry]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ids = read_panoptic_png(out / "panoptic" / "astronaut.png")
    annotation = json.loads((out / "segments" / "astronaut.json").read_text())
    assert sorted(s["id"] for s in annotation["segments_info"]) == sorted(set(np.unique(ids).tolist()) - {0})

    predictor = Predictor.from_pretrained("tiny", device="cpu")
    expected = predictor.predict(image, Vocabulary.preset("coco"), settings=predictor.named_settings("evaluation", **FAST_GEOMETRY))
    np.testing.assert_array_equal(ids, expected.label_map)
    assert len(annotation["segments_info"]) == len(expected.segments) >= 1


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["head"].__setitem__("num_queries", 100000), "head.num_queries"),
        (lambda c: c["unet"].__setitem__("block_out_channels", [4096] * 4), "unet.block_out_channels"),
        (lambda c: c["head"].__setitem__("hidden_dim", "32"), "head.hidden_dim"),
        (lambda c: c.__setitem__("head", [1, 2]), "unreadable"),
        (lambda c: c.__setitem__("clip", "big"), "unreadable"),
        (lambda c: c.__setitem__("inference", {"crop_size": "x"}), "crop_size"),
        (lambda c: c.__setitem__("variant", "caption"), "variant"),
    ],
)
def test_a_config_beside_a_checkpoint_cannot_choose_the_model_size(tmp_path, change, message):
    """The .config.json is data: it may carry settings, never another architecture (issue 15)."""
    model = perturbed("tiny")
    path = write_head(model, tmp_path / "model.pth")
    saved = model.config.to_dict()
    change(saved)
    finetuned_config_path(path).write_text(json.dumps({"config": saved, "base_model": "tiny"}))
    with pytest.raises(UserError, match=message) as caught:
        model_config(path)
    assert str(finetuned_config_path(path)) in str(caught.value)


def test_a_config_with_a_wrong_top_level_type_is_a_user_error(tmp_path):
    path = write_head(perturbed("tiny"), tmp_path / "model.pth")
    for text in ("[1, 2]", '{"config": 5}', '{"config": {}, "base_model": ["tiny"]}'):
        finetuned_config_path(path).write_text(text)
        with pytest.raises(UserError):
            model_config(path)
