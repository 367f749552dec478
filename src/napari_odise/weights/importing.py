"""Bring files the user already has into ``<home>/weights/`` under their manifest names.

Everything is verified before anything is placed, so a wrong file in the batch leaves the weights
folder unchanged. Files are copied (through a temporary file and an atomic rename) or, with
``link=True``, hard-linked when source and home share a file system, else symlinked: no second
copy of 4 GB.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from napari_odise.errors import InvalidInputError, MissingFileError

from . import hashing
from .errors import ChecksumMismatchError
from .manifest import WeightFile, all_files

#: ``import_files`` argument -> manifest role.
ROLES = {"odise": "odise", "sd": "stable_diffusion", "clip": "clip"}


def identify(path: Path, candidates: list[WeightFile], progress=False) -> tuple[WeightFile, str]:
    """The candidate whose published sha256 (or prefix) matches the file, and the file's digest."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist or is not a file")
    digest = hashing.file_sha256(path, progress=progress)
    for weight_file in candidates:
        if hashing.digest_matches(digest, weight_file):
            return weight_file, digest
    if len(candidates) == 1:
        raise hashing.mismatch_error(
            path, candidates[0], digest, advice="It is not the official file (or it is damaged); nothing was imported."
        )
    expected = ", ".join(f"{w.filename} ({w.expected_digest})" for w in candidates)
    raise ChecksumMismatchError(
        f"{path} (sha256 {digest}) matches none of: {expected}. It is not an official file or it is "
        "damaged; nothing was imported.",
        expected=expected,
        got=digest,
        path=path,
    )


def import_files(
    odise: str | Path | None = None,
    sd: str | Path | None = None,
    clip: str | Path | None = None,
    link: bool = False,
    progress=False,
) -> list[Path]:
    """Verify then place the given files; return their paths in the weights folder.

    ``odise`` may be either ODISE checkpoint (label or caption): the hash tells which.
    """
    given = {"odise": odise, "sd": sd, "clip": clip}
    given = {key: Path(value).expanduser() for key, value in given.items() if value is not None}
    if not given:
        raise InvalidInputError("nothing to import: give at least one of odise, sd, clip")
    identified = []
    for key, source in given.items():
        candidates = [w for w in all_files() if w.role == ROLES[key]]
        weight_file, digest = identify(source, candidates, progress=progress)
        identified.append((source, weight_file, digest))
    return [place(source, weight_file, digest, link=link) for source, weight_file, digest in identified]


def place(source: Path, weight_file: WeightFile, digest: str, link: bool = False) -> Path:
    """Put a verified file at its manifest path, atomically replacing whatever was there."""
    target = weight_file.local_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and os.path.samefile(source, target):
        return target
    temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".import.")) / target.name
    try:
        if link:
            _link(source.resolve(), temp)
        else:
            shutil.copyfile(source, temp)
            with open(temp, "r+b") as handle:
                os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
        temp.parent.rmdir()
    hashing.remember_sha256(target, digest)
    return target


def _link(source: Path, temp: Path) -> None:
    try:
        os.link(source, temp)
    except OSError:  # another file system, or no hard links there
        os.symlink(source, temp)
