"""sha256 of weight files, remembered between runs, and verification against the manifest.

Hashing a 4 GB checkpoint takes tens of seconds, so a small JSON index in the home folder keeps
each file's digest keyed by (absolute path, size, mtime_ns): a file that has not changed since it
was hashed is not hashed again. A changed size or modification time makes the entry stale.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from napari_odise.atomic import atomic_write_text

from . import recorded
from .errors import ChecksumMismatchError
from .manifest import WeightFile
from .paths import hash_index_path
from .progress import byte_bar

CHUNK_BYTES = 4 << 20
INDEX_FORMAT = 1


def sha256_file(path: Path, progress=False, desc: str | None = None) -> str:
    """Stream the file through sha256 (constant memory, whatever its size)."""
    path = Path(path)
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    with (
        open(path, "rb") as handle,
        byte_bar(progress, total=path.stat().st_size, desc=desc or f"checking {path.name}") as bar,
    ):
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            bar.update(count)
    return digest.hexdigest()


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _index_key(path: Path) -> str:
    return str(Path(path).absolute())


def _read_index() -> dict:
    index_file = hash_index_path()
    try:
        data = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: it is only a speed-up, start afresh
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        return {}
    entries = data.get("files")
    return entries if isinstance(entries, dict) else {}


def _write_index(entries: dict) -> None:
    """Replace the index atomically, so a crash never leaves half a JSON file."""
    atomic_write_text(hash_index_path(), json.dumps({"format": INDEX_FORMAT, "files": entries}, indent=1, sort_keys=True))


def known_sha256(path: Path) -> str | None:
    """The remembered digest of ``path`` if the file is unchanged since it was hashed, else None."""
    path = Path(path)
    if not path.is_file():
        return None
    entry = _read_index().get(_index_key(path))
    if isinstance(entry, dict) and {k: entry.get(k) for k in ("size", "mtime_ns")} == _stamp(path):
        return entry.get("sha256")
    return None


def remember_sha256(path: Path, digest: str) -> None:
    entries = _read_index()
    entries[_index_key(path)] = {**_stamp(Path(path)), "sha256": digest}
    _write_index(entries)


def forget(path: Path) -> None:
    entries = _read_index()
    if entries.pop(_index_key(path), None) is not None:
        _write_index(entries)


def file_sha256(path: Path, progress=False, use_index: bool = True) -> str:
    """The file's sha256, from the index when the file is unchanged, else computed and remembered."""
    path = Path(path)
    if use_index:
        remembered = known_sha256(path)
        if remembered:
            return remembered
    digest = sha256_file(path, progress=progress)
    remember_sha256(path, digest)
    return digest


def digest_matches(digest: str, weight_file: WeightFile) -> bool:
    """Full digests must be equal. ODISE files publish only a prefix: once a full digest is
    recorded for one (see :mod:`.recorded`) it must equal that, else the prefix must start it."""
    digest = digest.lower()
    if weight_file.sha256:
        return digest == weight_file.sha256
    found = recorded.recorded(weight_file)
    if found is not None:
        return digest == found.sha256
    return bool(weight_file.sha256_prefix) and digest.startswith(weight_file.sha256_prefix)


def mismatch_error(path: Path, weight_file: WeightFile, got: str, advice: str | None = None):
    found = recorded.recorded(weight_file)
    kind = "sha256" if weight_file.sha256 or found else "sha256 prefix"
    expected = found.sha256 if found else weight_file.expected_digest
    advice = advice or (
        f"The file is damaged or is not {weight_file.filename}. Delete it and download it again "
        f"(napari-odise weights download {weight_file.name} --force), or check that you placed the "
        f"right file (from {weight_file.url})."
    )
    if found:
        advice += (
            f" (The manifest publishes only the prefix {weight_file.sha256_prefix}; the full sha256 "
            f"was recorded from the first {weight_file.filename} used here, on {found.recorded[:10]}. "
            f"If that one was the wrong file, delete {recorded.recorded_digests_path()} to record "
            "afresh.)"
        )
    return ChecksumMismatchError(
        f"{path}: {kind} mismatch for {weight_file.name}: expected {expected}, got {got}. {advice}",
        expected=expected,
        got=got,
        path=path,
    )


def verify_file(path: Path, weight_file: WeightFile, progress=False, use_index: bool = True) -> str:
    """Return the file's sha256 if it matches the manifest (or the full digest recorded for a
    prefix-only file), else raise ChecksumMismatchError. A prefix-only file verified for the first
    time has its full digest and size recorded."""
    path = Path(path)
    found = recorded.recorded(weight_file)
    if found is not None and path.stat().st_size != found.size:
        raise mismatch_error(path, weight_file, f"a file of {path.stat().st_size} bytes "
                             f"(recorded: {found.size})")
    digest = file_sha256(path, progress=progress, use_index=use_index)
    if not digest_matches(digest, weight_file):
        raise mismatch_error(path, weight_file, digest)
    recorded.record_first(weight_file, digest, path.stat().st_size)
    return digest
