"""Bring files the user already has into ``<home>/weights/`` under their manifest names.

Everything is verified before anything is placed, so a wrong file in the batch leaves the weights
folder unchanged. Files are copied (through a temporary file and an atomic rename) or, with
``link=True``, hard-linked when source and home share a file system, else symlinked: no second
copy of 4 GB.

Verified means: the published sha256 for Stable Diffusion and CLIP. An ODISE head whose hash is not
the release's (re-saved, converted, from a mirror) is checked key by key and shape by shape against
the official head instead; if it fits, it is placed under its own name and used instead of the
released file (:mod:`own_files`), and the result says it is not the released file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from napari_odise.errors import InvalidInputError, MissingFileError, UserError

from . import hashing, recorded
from .errors import ChecksumMismatchError
from .manifest import WeightFile, all_files, files_for_model

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


@dataclass(frozen=True)
class ImportedFile:
    """A file placed by :func:`import_files`. ``released`` is False for an ODISE head that is not
    the released file but fits the official head: it was placed under its own name and is used
    instead of the released one."""

    path: Path
    weight_file: WeightFile
    sha256: str
    released: bool = True

    def note(self) -> str | None:
        """What a user must be told about this file, if anything."""
        if self.released:
            return None
        return (
            f"note: this is not the released {self.weight_file.filename} (its sha256 {self.sha256} differs), "
            f"but every key and shape fits the official {self.weight_file.name} head, so it was imported as "
            f"your own head and is used instead of the released file (`napari-odise weights use --reset` goes back)."
        )


def import_files(
    odise: str | Path | None = None,
    sd: str | Path | None = None,
    clip: str | Path | None = None,
    link: bool = False,
    progress=False,
) -> list[ImportedFile]:
    """Verify then place the given files; return where each went.

    ``odise`` may be either ODISE checkpoint (label or caption): the hash tells which, or, for a
    head that is not the released file, its keys.
    """
    from .own_files import forget_own_files, own_files, use_own_head

    given = {"odise": odise, "sd": sd, "clip": clip}
    given = {key: Path(value).expanduser() for key, value in given.items() if value is not None}
    if not given:
        raise InvalidInputError("nothing to import: give at least one of odise, sd, clip")
    identified = []
    for key, source in given.items():
        candidates = [w for w in all_files() if w.role == ROLES[key]]
        if key == "odise":
            identified.append(identify_head(source, candidates, progress=progress))
        else:
            identified.append(ImportedFile(source, *identify(source, candidates, progress=progress)))
    placed = []
    for found in identified:
        if found.released:
            path = place(found.path, found.weight_file, found.sha256, link=link)
            if found.weight_file.name in own_files():  # the released file is used again
                forget_own_files(found.weight_file.name)
        else:
            target = own_head_target(found)
            path = place(found.path, found.weight_file, found.sha256, link=link, target=target)
            use_own_head(found.weight_file, path)
        placed.append(ImportedFile(path, found.weight_file, found.sha256, found.released))
    return placed


def identify_head(path: Path, candidates: list[WeightFile], progress=False) -> ImportedFile:
    """A released ODISE head by its hash; else a head that fits the official one key by key."""
    try:
        return ImportedFile(path, *identify(path, candidates, progress=progress))
    except ChecksumMismatchError as mismatch:
        digest = mismatch.got
    from napari_odise.checkpoints.head_files import check_official_head  # reads the file's tensors

    released = ", ".join(f"{w.filename} ({w.expected_digest})" for w in candidates)
    try:
        config = check_official_head(path)
    except UserError as error:
        raise ChecksumMismatchError(
            f"{path} (sha256 {digest}) is not a released ODISE head ({released}), nor a head in the official "
            f"layout that fits the official model, so nothing was imported:\n{error}",
            expected=released,
            got=digest,
            path=path,
        ) from None
    weight_file = next(w for w in files_for_model(config.name) if w.role == ROLES["odise"])
    return ImportedFile(path, weight_file, digest, released=False)


def own_head_target(found: ImportedFile) -> Path:
    from .own_files import own_head_path

    return own_head_path(found.weight_file, found.sha256, found.path.suffix or ".pth")


def place(source: Path, weight_file: WeightFile, digest: str, link: bool = False, target: Path | None = None) -> Path:
    """Put a verified file at its manifest path (or ``target``), atomically replacing whatever was there."""
    target = target or weight_file.local_path()
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
    if hashing.digest_matches(digest, weight_file):  # the manifest's file, not an own head
        recorded.record_first(weight_file, digest, target.stat().st_size)
    return target


def _link(source: Path, temp: Path) -> None:
    try:
        os.link(source, temp)
    except OSError:  # another file system, or no hard links there
        os.symlink(source, temp)
