"""What is installed: one row per manifest file, cheap by default (no hashing unless asked)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import hashing, recorded
from .cache import cache_files
from .manifest import WeightFile, all_files, get


@dataclass
class FileStatus:
    """``verified`` is True/False when the file's sha256 is known (hash index or ``verify=True``),
    None when it was not checked. ``cached`` is True when a cache file was built from it."""

    name: str
    role: str
    path: Path
    present: bool
    size: int | None
    verified: bool | None
    cached: bool
    licence: str
    sha256: str | None = None
    #: how the file is checked: a full sha256 the manifest publishes, a full sha256 recorded at
    #: the first import/download/verification (ODISE files publish only a prefix), or the prefix only
    verified_by: str = ""


def file_status(name: str | WeightFile, verify: bool = False, progress=False) -> FileStatus:
    weight_file = get(name)
    path = weight_file.local_path()
    present = path.is_file()
    digest = None
    if present:
        digest = hashing.file_sha256(path, progress=progress) if verify else hashing.known_sha256(path)
    verified = None if digest is None else hashing.digest_matches(digest, weight_file)
    source_digest = digest or weight_file.sha256
    cached = bool(source_digest) and any(f"-{source_digest[:16]}-" in p.name for p in cache_files())
    return FileStatus(
        name=weight_file.name,
        role=weight_file.role,
        path=path,
        present=present,
        size=path.stat().st_size if present else None,
        verified=verified,
        cached=cached,
        licence=weight_file.licence,
        sha256=digest,
        verified_by=recorded.verified_by(weight_file),
    )


def status(verify: bool = False, progress=False) -> list[FileStatus]:
    """Every manifest file; ``verify=True`` hashes files whose digest is not remembered yet."""
    return [file_status(weight_file, verify=verify, progress=progress) for weight_file in all_files()]
