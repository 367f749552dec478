"""``napari-odise weights`` status / verify / import / download / clear-cache on a temporary home,
with a test manifest whose hashes match small local files."""

from __future__ import annotations

import hashlib
import os
import re

import pytest
import torch

from napari_odise.cli import main
from checkpoint_factory import (
    official_clip_shapes,
    official_sd_shapes,
    official_size_head,
    odise_checkpoint,
    write_openai_clip_archive,
    write_sparse_safetensors,
)
from napari_odise.weights import (
    ChecksumMismatchError,
    cache_path,
    import_files,
    manifest,
    own_files,
    status,
    weights_dir,
    write_cache,
)

CONTENTS = {
    "label": b"odise label head" * 100,
    "caption": b"odise caption head" * 100,
    "sd": b"stable diffusion v1.3" * 100,
    "clip": b"clip vit-l/14 336" * 100,
}


def sha(key: str) -> str:
    return hashlib.sha256(CONTENTS[key]).hexdigest()


@pytest.fixture
def sources(tmp_path, monkeypatch):
    """User files outside the home, and a manifest that describes exactly them."""
    test_manifest = manifest.Manifest.from_dict(
        {
            "format": 1,
            "files": [
                {
                    "name": "label",
                    "role": "odise",
                    "filename": "label-x.pth",
                    "url": "https://example.org/label.pth",
                    "licence": "CC BY-NC-SA 4.0",
                    "sha256_prefix": sha("label")[:8],
                },
                {
                    "name": "caption",
                    "role": "odise",
                    "filename": "caption-x.pth",
                    "url": "https://example.org/c.pth",
                    "licence": "CC BY-NC-SA 4.0",
                    "sha256_prefix": sha("caption")[:8],
                },
                {
                    "name": "sd",
                    "role": "stable_diffusion",
                    "filename": "sd.ckpt",
                    "url": "https://huggingface.co/o/r/resolve/main/sd.ckpt",
                    "licence": "CreativeML OpenRAIL-M",
                    "sha256": sha("sd"),
                    "requires_login": True,
                },
                {
                    "name": "clip",
                    "role": "clip",
                    "filename": "clip.pt",
                    "url": "https://example.org/clip.pt",
                    "licence": "MIT",
                    "sha256": sha("clip"),
                },
            ],
            "models": {"official": ["label", "sd", "clip"], "official-caption": ["caption", "sd", "clip"]},
        }
    )
    monkeypatch.setattr(manifest, "load_manifest", lambda: test_manifest)
    folder = tmp_path / "downloads"
    folder.mkdir()
    paths = {}
    for key, data in CONTENTS.items():
        paths[key] = folder / f"my-{key}.bin"
        paths[key].write_bytes(data)
    return paths


@pytest.fixture(scope="module")
def official_files(tmp_path_factory, official_meta_model):
    """SD (ldm .safetensors and a diffusers folder) and CLIP (open_clip state dict) at official size,
    written sparse: real names and shapes, no bytes (see write_sparse_safetensors)."""
    folder = tmp_path_factory.mktemp("official_size")
    files = {
        "ldm": write_sparse_safetensors(official_sd_shapes(), folder / "sd-v1-3.safetensors"),
        "clip": write_sparse_safetensors(official_clip_shapes(), folder / "open_clip_vit_l_14_336.safetensors"),
    }
    diffusers = folder / "stable-diffusion-v1-3"
    text_shapes = {f"text_model.{k}": v.shape for k, v in official_text_encoder_meta().state_dict().items()}
    for sub, filename, shapes in (
        ("unet", "diffusion_pytorch_model", {k: v.shape for k, v in official_meta_model.features.unet.state_dict().items()}),
        ("vae", "diffusion_pytorch_model", {k: v.shape for k, v in official_meta_model.features.vae.state_dict().items()}),
        ("text_encoder", "model", text_shapes),
    ):
        (diffusers / sub).mkdir(parents=True)
        write_sparse_safetensors(shapes, diffusers / sub / f"{filename}.safetensors")
    files["diffusers"] = diffusers
    return files


def official_text_encoder_meta():
    from napari_odise.model.config import get_config
    from napari_odise.model.sd_context import build_sd_text_encoder

    with torch.device("meta"):
        return build_sd_text_encoder(get_config("official").sd_text)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """The tiny model's SD (ldm .ckpt) and CLIP (OpenAI's TorchScript archive) in the official layouts."""
    import warnings

    from checkpoint_factory import sd_ldm_state_dict
    from napari_odise.model.build import build_odise
    from napari_odise.model.config import get_config
    from napari_odise.model.sd_context import build_sd_text_encoder

    model = build_odise(get_config("tiny"))
    text_encoder = build_sd_text_encoder(get_config("tiny").sd_text)
    folder = tmp_path_factory.mktemp("tiny_layouts")
    files = {"sd": folder / "sd-tiny.ckpt", "clip": folder / "clip-tiny.pt", "odise": folder / "odise-tiny.pth"}
    torch.save({"state_dict": sd_ldm_state_dict(model, text_encoder)}, files["sd"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_openai_clip_archive(model.clip, files["clip"])
    torch.save(odise_checkpoint(model), files["odise"])
    return files


def run(capsys, *argv):
    code = main(["weights", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_on_an_empty_home(sources, capsys, _isolated_home):
    code, out, _ = run(capsys, "status")
    assert code == 0
    lines = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]
    assert lines[0] == ["NAME", "ROLE", "PRESENT", "SIZE", "VERIFIED", "CHECKED BY", "CACHED", "LICENCE"]
    assert lines[1][:7] == ["label", "odise", "no", "-", "-", "sha256 prefix only", "no"]
    assert lines[3][:6] == ["sd", "stable_diffusion", "no", "-", "-", "full sha256 (published)"]
    assert str(_isolated_home / "weights") in out
    assert "sd: sd.ckpt" in out


def test_import_copies_verifies_and_status_shows_it(sources, capsys):
    code, out, _ = run(
        capsys,
        "import",
        "--odise",
        str(sources["label"]),
        "--sd",
        str(sources["sd"]),
        "--clip",
        str(sources["clip"]),
        "--no-progress",
        "--no-convert",
    )
    assert code == 0
    for name in ("label-x.pth", "sd.ckpt", "clip.pt"):
        assert f"imported: {weights_dir() / name}" in out
        assert not (weights_dir() / name).is_symlink()
    assert (weights_dir() / "sd.ckpt").read_bytes() == CONTENTS["sd"]
    assert sources["sd"].exists()  # a copy: the user's file stays

    rows = {row.name: row for row in status()}
    assert rows["label"].present and rows["label"].verified is True and rows["label"].size == len(CONTENTS["label"])
    assert rows["caption"].present is False and rows["caption"].verified is None
    code, out, _ = run(capsys, "status")
    assert out.splitlines()[3].split()[:5] == ["sd", "stable_diffusion", "yes", "2.1", "KB"]


def test_import_reports_files_that_verify_but_cannot_be_converted(sources, capsys):
    """These test files match the (patched) manifest's hashes but are not checkpoints."""
    code, out, err = run(
        capsys, "import", "--odise", str(sources["label"]), "--sd", str(sources["sd"]),
        "--clip", str(sources["clip"]), "--no-progress",
    )
    assert code == 1
    assert "imported:" in out and "converting official" in out
    assert "official:" in err and "could not be read as a PyTorch checkpoint" in err


def test_import_links_and_tells_label_from_caption_by_hash(sources, capsys):
    code, out, _ = run(capsys, "import", "--odise", str(sources["caption"]), "--link", "--no-progress")
    assert code == 0 and "caption-x.pth" in out
    placed = weights_dir() / "caption-x.pth"
    assert os.path.samefile(placed, sources["caption"])
    imported = import_files(odise=sources["label"], link=True)
    assert [(f.path, f.weight_file.name, f.released, f.note()) for f in imported] == [
        (weights_dir() / "label-x.pth", "label", True, None)
    ]


def test_import_of_a_wrong_file_places_nothing(sources, capsys):
    code, _, err = run(capsys, "import", "--sd", str(sources["sd"]), "--clip", str(sources["label"]), "--no-progress")
    assert code == 1
    assert "mismatch" in err and f"expected {sha('clip')}" in err and "nothing was imported" in err
    assert not weights_dir().exists() or list(weights_dir().iterdir()) == []
    with pytest.raises(ChecksumMismatchError, match="not a released ODISE head") as error:
        import_files(odise=sources["sd"])  # neither the release nor a head: its content says why
    assert "could not be read as a PyTorch checkpoint" in str(error.value)
    assert not weights_dir().exists() or list(weights_dir().iterdir()) == []


def test_import_usage_errors(sources, capsys, tmp_path):
    assert run(capsys, "import")[0] == 1
    code, _, err = run(capsys, "import", "--clip", str(tmp_path / "absent.pt"))
    assert code == 1 and "does not exist" in err


def test_use_checks_records_own_files_status_lists_them_and_reset_forgets(sources, official_files, capsys, tmp_path):
    folder, clip = official_files["diffusers"], official_files["clip"]
    code, out, _ = run(capsys, "use", "--sd", str(folder), "--clip", str(clip), "--no-convert")
    assert code == 0 and f"sd: {folder.resolve()}" in out and f"clip: {clip.resolve()}" in out
    assert own_files() == {"sd": folder.resolve(), "clip": clip.resolve()}
    code, out, _ = run(capsys, "status")
    assert "Your own files" in out and f"  sd: {folder.resolve()}\n" in out
    code, _, err = run(capsys, "use", "--clip", str(tmp_path / "nope.pt"))
    assert code == 1 and "does not exist" in err
    code, _, err = run(capsys, "use")
    assert code == 1 and "--sd PATH and/or --clip PATH" in err
    code, out, _ = run(capsys, "use", "--reset")
    assert code == 0 and "Your own files" not in run(capsys, "status")[1]


def test_use_refuses_a_file_that_does_not_fit_and_records_nothing(sources, official_files, tiny_files, capsys):
    """Checked key by key when `weights use` runs, not at the first start."""
    ldm = official_files["ldm"]
    code, _, err = run(capsys, "use", "--sd", str(ldm), "--clip", str(ldm), "--no-convert")  # SD given as CLIP
    assert code == 1 and f"{ldm} does not fit the CLIP ViT-L/14-336" in err and "missing 446 tensors" in err
    assert own_files() == {}
    # the test model's SD and CLIP in the official layouts: right names, other shapes
    code, _, err = run(capsys, "use", "--sd", str(tiny_files["sd"]), "--no-convert")
    assert code == 1 and "tensors with the wrong shape" in err and "Stable Diffusion UNet" in err
    code, _, err = run(capsys, "use", "--clip", str(tiny_files["clip"]), "--no-convert")
    assert code == 1 and "does not fit the CLIP" in err and "tensors with the wrong shape" in err  # a TorchScript archive
    assert own_files() == {}
    # the official layouts at official size pass: SD as an ldm checkpoint, CLIP as an open_clip state dict
    code, out, _ = run(capsys, "use", "--sd", str(ldm), "--clip", str(official_files["clip"]), "--no-convert")
    assert code == 0 and own_files() == {"sd": ldm.resolve(), "clip": official_files["clip"].resolve()}


def test_verify_exit_codes(sources, capsys):
    code, _, err = run(capsys, "verify")
    assert code == 1 and "no weight files" in err

    import_files(odise=sources["label"], clip=sources["clip"])
    code, out, _ = run(capsys, "verify", "--no-progress")
    assert code == 0
    assert f"label: ok (sha256 {sha('label')}; checked by full sha256 (recorded " in out
    assert f"clip: ok (sha256 {sha('clip')}; checked by full sha256 (published))" in out

    code, out, _ = run(capsys, "verify", "sd", "--no-progress")
    assert code == 1 and "sd: MISSING" in out

    placed = weights_dir() / "clip.pt"
    with open(placed, "ab") as handle:  # damage it; verify re-hashes rather than trusting the index
        handle.write(b"!")
    code, out, err = run(capsys, "verify", "clip", "--no-progress")
    assert code == 1 and "clip: MISMATCH" in out and f"expected {sha('clip')}" in err
    assert [row.verified for row in status() if row.name == "clip"] == [False]

    code, _, err = run(capsys, "verify", "nonexistent")
    assert code == 1 and "unknown weight file 'nonexistent'" in err


def test_verify_cache_flag_reports_damaged_cache(sources, capsys):
    import_files(clip=sources["clip"])
    path = cache_path("clip", sha("clip"))
    write_cache({"w": torch.arange(10_000, dtype=torch.float32)}, path, source_sha256=sha("clip"))
    assert [row.cached for row in status() if row.name == "clip"] == [True]
    assert run(capsys, "verify", "clip", "--cache", "--no-progress")[0] == 0
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", "clip", "--cache", "--no-progress")
    assert code == 1 and "DAMAGED" in out

    code, out, _ = run(capsys, "clear-cache")
    assert code == 0 and "removed 1 cache files" in out and not path.exists()


def test_download_failure_exit_code_and_message(sources, capsys):
    code, out, err = run(capsys, "download", "clip", "--url", "http://127.0.0.1:9/clip.pt", "--no-progress")
    assert code == 1
    assert "clip: clip.pt (licence: MIT)" in out
    assert "unreachable" in err and str(weights_dir() / "clip.pt") in err
    assert run(capsys, "download", "label", "sd", "--url", "http://127.0.0.1:9/x")[0] == 1  # --url needs one NAME
    assert run(capsys, "download", "--model", "nonexistent")[0] == 1


def test_download_of_a_present_file_verifies_it(sources, capsys):
    import_files(sd=sources["sd"])
    code, out, _ = run(capsys, "download", "sd", "--no-progress")
    assert code == 0 and f"ok: {weights_dir() / 'sd.ckpt'}" in out


def test_import_of_a_head_that_is_not_the_release_checks_it_and_says_so(sources, official_meta_model, tmp_path, capsys):
    """A re-saved official-size head (other bytes than the release): imported under its own name after
    the strict key/shape check, used for the official model instead of the released file."""
    from napari_odise.checkpoints.official_loading import source_paths
    from napari_odise.weights.hashing import sha256_file

    resaved = tmp_path / "odise_label_coco_50e-resaved.pth"
    torch.save(official_size_head(official_meta_model), resaved)
    digest = sha256_file(resaved)
    code, out, _ = run(capsys, "import", "--odise", str(resaved), "--no-progress", "--no-convert")
    assert code == 0
    placed = weights_dir() / f"label-own-{digest[:8]}.pth"
    assert f"imported: {placed}" in out
    assert f"note: this is not the released label-x.pth (its sha256 {digest} differs)" in out
    assert placed.read_bytes() == resaved.read_bytes() and own_files() == {"label": placed}
    paths = source_paths("official", {"sd": sources["sd"], "clip": sources["clip"]}, allow_download=False, progress=False)
    assert paths["odise"] == placed
    code, out, _ = run(capsys, "status")
    assert f"  label: {placed}  (imported head, not the released file)" in out

    # importing the released file afterwards goes back to it, and the copy is deleted
    code, out, _ = run(capsys, "import", "--odise", str(sources["label"]), "--no-progress", "--no-convert")
    assert code == 0 and "note:" not in out
    assert own_files() == {} and not placed.exists()
    paths = source_paths("official", {"sd": sources["sd"], "clip": sources["clip"]}, allow_download=False, progress=False)
    assert paths["odise"] == weights_dir() / "label-x.pth"


def test_import_refuses_a_head_that_does_not_fit_the_official_one(sources, official_meta_model, tiny_files, tmp_path, capsys):
    checkpoint = official_size_head(official_meta_model, "label")
    key = "sem_seg_head.pixel_decoder.transformer.level_embed"
    checkpoint["model"][key] = torch.zeros(4, 256)
    wrong = tmp_path / "wrong.pth"
    torch.save(checkpoint, wrong)
    code, _, err = run(capsys, "import", "--odise", str(wrong), "--no-progress", "--no-convert")
    assert code == 1 and "not a released ODISE head" in err and "nothing was imported" in err
    assert f"{key} (4, 256) != expected (3, 256)" in err
    code, _, err = run(capsys, "import", "--odise", str(tiny_files["odise"]), "--no-progress", "--no-convert")
    assert code == 1 and "a head of the tiny test model" in err and "--model" in err
    assert own_files() == {} and (not weights_dir().exists() or list(weights_dir().iterdir()) == [])


def test_import_tells_a_caption_head_by_its_keys(sources, tmp_path, capsys):
    from napari_odise.model.build import build_odise
    from napari_odise.model.config import get_config

    caption = build_odise(get_config("official-caption"), device="meta")
    path = tmp_path / "caption.pth"
    torch.save(official_size_head(caption, "caption"), path)
    code, out, _ = run(capsys, "import", "--odise", str(path), "--link", "--no-progress", "--no-convert")
    assert code == 0 and "not the released caption-x.pth" in out
    assert list(own_files()) == ["caption"]
