"""Which image files a batch covers, in a fixed order, and which of them one shard takes.

The order and the keys must come out the same on every machine and every run, because resuming,
sharding and merging all identify an image by its key:

- a key is the file's path relative to the common folder of the inputs, with "/" separators
  (one folder given: relative to it; one file given: its name);
- files are sorted by key; hidden files and folders (a leading ".") are skipped, and so is
  anything inside the output folder, so a batch never eats its own outputs.

Sharding is decided per file, before multi-page TIFFs are split into pages, so all pages of a
file land in the same shard.

Discovery never blocks and never crashes on what a folder holds: only regular files (or links to
them) are taken. A FIFO named ``x.png`` (opening it would wait forever for a writer), a device, a
socket, a link loop or a dangling link is skipped and reported, one line per file, on the
``napari_odise.batch`` logger (shown on stderr by the CLI) and in :attr:`Discovered.skipped`.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from napari_odise.errors import UserError

log = logging.getLogger("napari_odise.batch")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
SHARD_METHODS = ("hash", "index")


class DiscoveryError(UserError, ValueError):
    """The inputs name nothing usable (missing path, no images); the message says what to do."""


@dataclass(frozen=True, order=True)
class ImageFile:
    key: str  # stable name of the image in every output (relative path, "/" separators)
    path: Path


@dataclass(frozen=True)
class SkippedFile:
    """A name in an input folder that is not a regular file (or a link to one), and why."""

    path: Path
    reason: str


class Discovered(list):
    """The image files found (a list of :class:`ImageFile`), plus :attr:`skipped`: what looked
    like an image by its name but was not a regular file."""

    def __init__(self, files: Iterable[ImageFile] = (), skipped: Iterable[SkippedFile] = ()):
        super().__init__(files)
        self.skipped = tuple(skipped)


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be opened as an image file without risk, or None for a regular file
    (links followed). Only stats: never opens, so a FIFO cannot block."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a dangling link (to {os.readlink(path)!r}, which does not exist)"
        return "gone (removed while the folder was read)"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a link loop (the link leads back to itself)"
        return f"cannot be examined ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe): reading it would wait for a writer"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _matches(key: str, pattern: str | None) -> bool:
    """``pattern`` is a shell glob tested against the file name, or the whole key if it has "/"."""
    if not pattern:
        return True
    target = key if "/" in pattern else key.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(target.lower(), pattern.lower())


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def _walk(folder: Path, recursive: bool, exclude: Sequence[Path]) -> Iterable[Path]:
    if recursive:
        for root, dirs, files in os.walk(folder, followlinks=False):
            root_path = Path(root)
            dirs[:] = [d for d in dirs if not d.startswith(".") and not _inside(root_path / d, exclude)]
            for name in files:
                if not name.startswith("."):
                    yield root_path / name
    else:
        with os.scandir(folder) as entries:
            for entry in entries:  # folders (and links to them) are left out by _regular_only
                if not entry.name.startswith(".") and not _is_folder(entry):
                    yield Path(entry.path)


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link loop: reported as a file by _regular_only
        return False


def _regular_only(files: Iterable[Path], skipped: list[SkippedFile]) -> Iterable[Path]:
    for file in files:
        reason = not_a_regular_file(file)
        if reason is None:
            yield file
        elif reason != "a folder":
            log.warning("skipped %s: %s", file, reason)
            skipped.append(SkippedFile(file, reason))


def discover(
    inputs: Sequence[str | os.PathLike],
    recursive: bool = False,
    pattern: str | None = None,
    exclude: Sequence[str | os.PathLike] = (),
) -> Discovered:
    """Image files under ``inputs`` (files and/or folders), sorted by key.

    A file named directly is taken whatever its suffix (the reader then decides); files found in
    folders must have one of IMAGE_SUFFIXES and match ``pattern``. Names that are not regular
    files are skipped and reported (see the module notes); a named input that is one is refused.
    """
    if not inputs:
        raise DiscoveryError("no input given: name image files or folders")
    missing = [str(p) for p in inputs if not os.path.lexists(p)]
    if missing:
        raise DiscoveryError(f"not found: {', '.join(missing)}")
    unusable = [
        f"{p} is {reason}" for p in inputs
        if (reason := not_a_regular_file(p)) is not None and reason != "a folder"
    ]
    if unusable:
        raise DiscoveryError(f"not an image file: {'; '.join(unusable)}")
    paths = [Path(p).resolve() for p in inputs]
    excluded = [Path(p).resolve() for p in exclude]
    base = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in paths]))
    found: dict[str, Path] = {}
    skipped: list[SkippedFile] = []
    for path in paths:
        if path.is_dir():
            candidates = _regular_only(
                (f for f in _walk(path, recursive, excluded)
                 if _is_image(f) and not _inside(f, excluded)),
                skipped,
            )
        else:
            candidates = [path]
        for file in candidates:
            key = file.relative_to(base).as_posix()
            if path.is_dir() and not _matches(key, pattern):
                continue
            found[key] = file
    return Discovered((ImageFile(key, found[key]) for key in sorted(found)), skipped)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), with 0 <= i < n (zero-based, like ``--array=0-(n-1)`` in SLURM)."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise DiscoveryError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise DiscoveryError(f"shard {text!r}: need n >= 1 and 0 <= i < n (shards are numbered from 0)")
    return index, count


def shard_of(key: str, count: int) -> int:
    """The shard a key belongs to under the "hash" method (sha1, so every process agrees)."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(files: Sequence[ImageFile], index: int, count: int, by: str = "hash") -> list[ImageFile]:
    """The files of shard ``index`` of ``count``.

    "hash": by a hash of the key; a file keeps its shard when files are added or removed, so
    re-running an array job on a grown folder never gives one image to two shards.
    "index": every count-th file of the sorted list; shards differ in size by at most one, but
    adding a file moves others between shards.
    """
    if by not in SHARD_METHODS:
        raise DiscoveryError(f"shard method must be one of {SHARD_METHODS}, got {by!r}")
    if by == "hash":
        return [f for f in files if shard_of(f.key, count) == index]
    return list(files[index::count])
