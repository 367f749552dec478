"""Streaming sha256, the (path, size, mtime_ns) hash index, and prefix/full verification."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from napari_odise.weights import ChecksumMismatchError, WeightFile, hashing
from napari_odise.weights.paths import hash_index_path


def weight_file(**changes) -> WeightFile:
    values = dict(name="w", role="odise", filename="w.pth", url="https://example.org/w.pth", licence="L")
    values.update(changes)
    return WeightFile(**values)


@pytest.fixture
def counted(monkeypatch):
    """Count real hash computations (the index is the thing under test)."""
    calls = []
    real = hashing.sha256_file

    def counting(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(hashing, "sha256_file", counting)
    return calls


def test_streaming_sha256_matches_hashlib_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "CHUNK_BYTES", 1000)  # many chunks, last one partial
    data = os.urandom(10_500)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert hashing.sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_index_avoids_rehashing_until_the_file_changes(tmp_path, counted):
    path = tmp_path / "big.pth"
    path.write_bytes(b"a" * 5000)
    expected = hashlib.sha256(b"a" * 5000).hexdigest()

    assert hashing.file_sha256(path) == expected
    assert hashing.file_sha256(path) == expected
    assert hashing.file_sha256(path) == expected
    assert len(counted) == 1

    index = json.loads(hash_index_path().read_text())
    entry = index["files"][str(path.absolute())]
    assert entry == {"size": 5000, "mtime_ns": path.stat().st_mtime_ns, "sha256": expected}

    path.write_bytes(b"b" * 5000)  # same size, new content and mtime
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert hashing.file_sha256(path) == hashlib.sha256(b"b" * 5000).hexdigest()
    assert len(counted) == 2

    assert hashing.file_sha256(path, use_index=False) == hashlib.sha256(b"b" * 5000).hexdigest()
    assert len(counted) == 3


def test_damaged_index_is_ignored_and_rewritten(tmp_path, counted):
    path = tmp_path / "f.pth"
    path.write_bytes(b"xyz")
    hash_index_path().parent.mkdir(parents=True, exist_ok=True)
    hash_index_path().write_text("{not json")
    assert hashing.file_sha256(path) == hashlib.sha256(b"xyz").hexdigest()
    assert json.loads(hash_index_path().read_text())["format"] == 1
    assert hashing.known_sha256(path) == hashlib.sha256(b"xyz").hexdigest()
    assert len(counted) == 1


def test_full_digest_and_prefix_verification(tmp_path):
    path = tmp_path / "f.pth"
    path.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert hashing.verify_file(path, weight_file(sha256=digest)) == digest
    assert hashing.verify_file(path, weight_file(sha256_prefix=digest[:8])) == digest
    assert hashing.digest_matches(digest.upper(), weight_file(sha256_prefix=digest[:8]))
    assert not hashing.digest_matches(digest, weight_file(sha256_prefix="00000000"))


def test_mismatch_says_expected_got_and_what_to_do(tmp_path):
    path = tmp_path / "f.pth"
    path.write_bytes(b"not the official file")
    got = hashlib.sha256(b"not the official file").hexdigest()
    with pytest.raises(ChecksumMismatchError) as caught:
        hashing.verify_file(path, weight_file(sha256_prefix="b67d2efc"))
    message = str(caught.value)
    assert "sha256 prefix mismatch" in message
    assert "expected b67d2efc" in message and f"got {got}" in message
    assert "Delete it and download it again" in message and "--force" in message
    assert (caught.value.expected, caught.value.got, caught.value.path) == ("b67d2efc", got, path)


def test_manifest_rejects_malformed_hashes():
    with pytest.raises(ValueError, match="lower-case hex"):
        weight_file(sha256_prefix="B67D2EFC")
    with pytest.raises(ValueError, match="64 hex digits"):
        weight_file(sha256="abc")
    with pytest.raises(ValueError, match="neither sha256 nor sha256_prefix"):
        weight_file()
