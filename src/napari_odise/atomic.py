"""Atomic file writes: a reader sees the old file or the new one, never half of either.

A file is written under a hidden temporary name in the same folder (so the final rename never
crosses file systems), flushed and fsynced, then renamed over the target with ``os.replace``; the
folder is fsynced too, so the rename itself survives a power cut. If anything fails, the
temporary file is removed and the target is untouched.

Temporary names are ``.<target name>.<random>.tmp``: :func:`remove_stale_temporaries` clears
what a crashed writer left behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def _temporary_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def fsync_directory(folder: str | os.PathLike) -> None:
    """Make a rename or a new file in ``folder`` durable (a no-op where folders cannot be
    opened, as on Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary stream whose content replaces ``path`` only when the block ends cleanly.

    The parent folder is created if missing. The new file gets the usual permissions (the umask
    applies), unlike :mod:`tempfile`'s private 0600 files.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_path(target)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; returns the path."""
    with atomic_writer(path) as stream:
        stream.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically (no newline translation: bytes are exact)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_copy(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy a file's bytes to ``destination`` atomically (metadata such as mtime not copied)."""
    with open(source, "rb") as reader, atomic_writer(destination) as writer:
        shutil.copyfileobj(reader, writer, length=1 << 20)
    return Path(destination)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files a crashed writer left in ``folder``; returns what was removed.

    Only call this while no other process writes into the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for candidate in folder.glob(f".*{TEMP_SUFFIX}"):
        if candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed
