"""Files known only by a hash prefix (the ODISE release) are pinned to the full sha256 and size
of the first one imported, downloaded or verified (issue 15, item 3). The test manifest's prefix
is 4 hex digits so that a matching stand-in can be found here in a moment; the release's 8 take
minutes, which is why a prefix alone is not enough."""

from __future__ import annotations

import hashlib
import itertools
import re

import pytest

from napari_odise.cli import main
from napari_odise.weights import ChecksumMismatchError, import_files, manifest, recorded, verify_file
from napari_odise.weights.status import file_status

OFFICIAL = b"the official release file " * 40


def _same_prefix_stand_in(prefix: str, size: int) -> bytes:
    """Other bytes of the same size whose sha256 starts with ``prefix`` (found by trying)."""
    for counter in itertools.count():
        candidate = (b"made up %08d " % counter).ljust(size, b"#")
        if hashlib.sha256(candidate).hexdigest().startswith(prefix):
            return candidate
    raise AssertionError("unreachable")


@pytest.fixture
def release(tmp_path, monkeypatch):
    digest = hashlib.sha256(OFFICIAL).hexdigest()
    test_manifest = manifest.Manifest.from_dict({
        "format": 1,
        "files": [
            {"name": "head", "role": "clip", "filename": f"head-{digest[:4]}.pt",
             "url": "https://example.org/head.pt", "licence": "MIT", "sha256_prefix": digest[:4]},
            {"name": "full", "role": "stable_diffusion", "filename": "full.ckpt",
             "url": "https://example.org/full.ckpt", "licence": "MIT",
             "sha256": hashlib.sha256(b"full").hexdigest()},
        ],
        "models": {"m": ["head", "full"]},
    })
    monkeypatch.setattr(manifest, "load_manifest", lambda: test_manifest)
    official = tmp_path / "official.pt"
    official.write_bytes(OFFICIAL)
    stand_in = tmp_path / "stand_in.pt"
    stand_in.write_bytes(_same_prefix_stand_in(digest[:4], len(OFFICIAL)))
    return test_manifest.files[0], official, stand_in, digest


def test_first_import_records_the_full_digest_and_later_files_must_equal_it(release, capsys):
    head, official, stand_in, digest = release
    assert file_status("head").verified_by == "sha256 prefix only"
    assert file_status("full").verified_by == "full sha256 (published)"
    import_files(clip=official)
    found = recorded.recorded(head)
    assert (found.sha256, found.size) == (digest, len(OFFICIAL))
    assert re.fullmatch(r"full sha256 \(recorded \d{4}-\d\d-\d\d\)", file_status("head").verified_by)
    # the stand-in matches the prefix, but not the recorded digest: refused, nothing replaced
    with pytest.raises(ChecksumMismatchError, match=f"expected {digest}.*recorded from the first"):
        import_files(clip=stand_in)
    assert head.local_path().read_bytes() == OFFICIAL
    # swapped in by hand: verify and status say so
    head.local_path().write_bytes(stand_in.read_bytes())
    with pytest.raises(ChecksumMismatchError, match="mismatch for head"):
        verify_file(head.local_path(), head, use_index=False)
    assert main(["weights", "verify", "head", "--no-progress"]) == 1
    assert "head: MISMATCH" in capsys.readouterr().out
    assert file_status("head", verify=True).verified is False


def test_without_a_record_a_prefix_match_is_all_there_is_and_status_says_so(release, capsys):
    head, official, stand_in, digest = release
    assert main(["weights", "status"]) == 0
    out = capsys.readouterr().out
    assert "sha256 prefix only" in out and "which a made-up file can match" in out
    head.local_path().parent.mkdir(parents=True, exist_ok=True)
    head.local_path().write_bytes(OFFICIAL)  # placed by hand: recorded at the first verification
    assert verify_file(head.local_path(), head) == digest
    assert recorded.recorded(head).sha256 == digest
    assert main(["weights", "status"]) == 0
    assert "which a made-up file can match" not in capsys.readouterr().out


def test_a_file_of_another_size_is_refused_before_hashing(release):
    head, official, _, _ = release
    import_files(clip=official)
    head.local_path().write_bytes(OFFICIAL + b"x")
    with pytest.raises(ChecksumMismatchError, match=f"recorded: {len(OFFICIAL)}"):
        verify_file(head.local_path(), head)


def test_a_damaged_record_file_falls_back_to_the_prefix(release):
    head, official, _, _ = release
    import_files(clip=official)
    recorded.recorded_digests_path().write_text("{broken")
    assert recorded.recorded(head) is None
    assert file_status("head").verified_by == "sha256 prefix only"
