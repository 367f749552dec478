"""``napari-odise weights`` status / verify / import / download / clear-cache on a temporary home,
with a test manifest whose hashes match small local files."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch

from napari_odise.cli import main
from napari_odise.weights import (
    ChecksumMismatchError,
    cache_path,
    import_files,
    manifest,
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


def run(capsys, *argv):
    code = main(["weights", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_on_an_empty_home(sources, capsys, _isolated_home):
    code, out, _ = run(capsys, "status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:7] == ["NAME", "ROLE", "PRESENT", "SIZE", "VERIFIED", "CACHED", "LICENCE"]
    assert lines[1].split()[:6] == ["label", "odise", "no", "-", "-", "no"]
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
    assert import_files(odise=sources["label"], link=True) == [weights_dir() / "label-x.pth"]


def test_import_of_a_wrong_file_places_nothing(sources, capsys):
    code, _, err = run(capsys, "import", "--sd", str(sources["sd"]), "--clip", str(sources["label"]), "--no-progress")
    assert code == 1
    assert "mismatch" in err and f"expected {sha('clip')}" in err and "nothing was imported" in err
    assert not weights_dir().exists() or list(weights_dir().iterdir()) == []
    with pytest.raises(ChecksumMismatchError, match="matches none of"):
        import_files(odise=sources["sd"])


def test_import_usage_errors(sources, capsys, tmp_path):
    assert run(capsys, "import")[0] == 1
    code, _, err = run(capsys, "import", "--clip", str(tmp_path / "absent.pt"))
    assert code == 1 and "does not exist" in err


def test_use_records_own_files_status_lists_them_and_reset_forgets(sources, capsys, tmp_path):
    folder = tmp_path / "stable-diffusion-v1-4"  # e.g. a diffusers folder
    folder.mkdir()
    code, out, _ = run(capsys, "use", "--sd", str(folder), "--clip", str(sources["clip"]), "--no-convert")
    assert code == 0 and f"sd: {folder.resolve()}" in out and f"clip: {sources['clip'].resolve()}" in out
    code, out, _ = run(capsys, "status")
    assert "Your own files" in out and f"  sd: {folder.resolve()}\n" in out
    code, _, err = run(capsys, "use", "--clip", str(tmp_path / "nope.pt"))
    assert code == 1 and "does not exist" in err
    code, _, err = run(capsys, "use")
    assert code == 1 and "--sd PATH and/or --clip PATH" in err
    code, out, _ = run(capsys, "use", "--reset")
    assert code == 0 and "Your own files" not in run(capsys, "status")[1]


def test_verify_exit_codes(sources, capsys):
    code, _, err = run(capsys, "verify")
    assert code == 1 and "no weight files" in err

    import_files(odise=sources["label"], clip=sources["clip"])
    code, out, _ = run(capsys, "verify", "--no-progress")
    assert code == 0
    assert f"label: ok (sha256 {sha('label')})" in out and f"clip: ok (sha256 {sha('clip')})" in out

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
