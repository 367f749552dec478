"""The packaged manifest, the home folder layout and where downloads come from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_odise.weights import UnknownWeightError, files_for_model, get, manifest, paths, sources
from napari_odise.weights.manifest import Manifest, WeightFile

REPO_MANIFEST = Path(__file__).resolve().parents[1] / "weights" / "manifest.json"


def test_packaged_manifest_is_the_repository_manifest():
    data = json.loads(REPO_MANIFEST.read_text())
    assert manifest.load_manifest() == Manifest.from_dict(data)
    assert [w.name for w in manifest.all_files()] == [entry["name"] for entry in data["files"]]


def test_official_models_and_their_files():
    assert [w.name for w in files_for_model("official")] == ["odise_label_coco_50e", "sd-v1-3", "clip-vit-l-14-336"]
    assert [w.name for w in files_for_model("official-caption")] == [
        "odise_caption_coco_50e",
        "sd-v1-3",
        "clip-vit-l-14-336",
    ]
    label = get("odise_label_coco_50e")
    assert (label.sha256, label.sha256_prefix, label.expected_digest) == (None, "b67d2efc", "b67d2efc")
    assert label.filename == "odise_label_coco_50e-b67d2efc.pth"
    sd = get("sd-v1-3")
    assert sd.requires_login and sd.role == "stable_diffusion" and sd.licence == "CreativeML OpenRAIL-M"
    assert get("clip-vit-l-14-336").sha256 == "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
    assert get(sd) is sd


def test_unknown_names_list_what_exists():
    with pytest.raises(UnknownWeightError, match="sd-v1-3"):
        get("sd-v1-5")
    with pytest.raises(UnknownWeightError, match="official-caption"):
        files_for_model("official-large")


def test_home_layout_follows_the_environment(_isolated_home, monkeypatch, tmp_path):
    assert paths.home_dir() == _isolated_home.resolve()
    assert get("sd-v1-3").local_path() == _isolated_home / "weights" / "sd-v1-3.ckpt"
    assert paths.cache_dir() == _isolated_home / "cache"
    monkeypatch.setenv("NAPARI_ODISE_HOME", str(tmp_path / "elsewhere"))
    assert paths.weights_dir() == (tmp_path / "elsewhere" / "weights").resolve()


def test_default_home_is_the_user_cache_folder(monkeypatch):
    import platformdirs

    monkeypatch.delenv("NAPARI_ODISE_HOME")
    assert paths.home_dir() == Path(platformdirs.user_cache_dir("napari-odise")).resolve()


def test_manifest_validation():
    entry = {"name": "a", "role": "clip", "filename": "a.pt", "url": "u", "licence": "MIT", "sha256_prefix": "abcd1234"}
    with pytest.raises(ValueError, match="plain file name"):
        WeightFile.from_dict({**entry, "filename": "../a.pt"})
    with pytest.raises(ValueError, match="format"):
        Manifest.from_dict({"format": 2, "files": [entry]})
    with pytest.raises(ValueError, match="twice"):
        Manifest.from_dict({"format": 1, "files": [entry, entry]})
    with pytest.raises(ValueError, match="unknown files"):
        Manifest.from_dict({"format": 1, "files": [entry], "models": {"m": ["a", "b"]}})


def test_url_precedence(monkeypatch):
    sd = get("sd-v1-3")
    assert sources.resolve_url(sd) == sd.url
    monkeypatch.setenv("NAPARI_ODISE_WEIGHTS_MIRROR", "https://mirror.example/weights/")
    assert sources.resolve_url(sd) == "https://mirror.example/weights/sd-v1-3.ckpt"
    monkeypatch.setenv("NAPARI_ODISE_URL_SD_V1_3", "https://one.example/sd.ckpt")
    assert sources.resolve_url(sd) == "https://one.example/sd.ckpt"
    assert sources.resolve_url(sd, "https://arg.example/sd.ckpt") == "https://arg.example/sd.ckpt"


def test_token_is_only_for_gated_files_on_hugging_face(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abc")
    sd, clip = get("sd-v1-3"), get("clip-vit-l-14-336")
    assert sources.auth_headers(sd, sd.url) == {"Authorization": "Bearer hf_abc"}
    assert sources.auth_headers(sd, "https://mirror.example/sd-v1-3.ckpt") == {}
    assert sources.auth_headers(sd, "https://huggingface.co.evil.example/x") == {}
    assert sources.auth_headers(clip, "https://huggingface.co/x") == {}
    assert sources.model_page(sd.url) == "https://huggingface.co/CompVis/stable-diffusion-v-1-3-original"
