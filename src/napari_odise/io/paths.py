"""The one guard for names read from files: a path a dataset manifest or a COCO JSON gives must
lead to a place inside the folder it is relative to.

A received dataset or COCO file is data from someone else. Without this guard a manifest entry
``../../home/me/notes.txt`` would be deleted by ``export --overwrite`` (stale-file removal) and a
COCO ``file_name`` ``/etc/passwd`` would be opened and copied into a new dataset. So every reader
and writer resolves such names through :func:`inside`, which refuses absolute paths, ``..``
parts and names that a symbolic link carries out of the folder.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from napari_odise.io.errors import DatasetError


class UnsafePathError(DatasetError):
    """A name read from a file leads outside the folder it must stay in; nothing was opened."""


def inside(folder: str | os.PathLike, name: object, what: str) -> Path:
    """``folder / name``, refused unless it stays inside ``folder`` once links are resolved.

    ``what`` says where the name came from (e.g. ``"manifest: image 'cat' panoptic"``); the
    message names it and the offending name.
    """
    problem = _name_problem(name)
    folder = Path(folder)
    if problem is None:
        candidate = folder / name
        base = folder.resolve()
        try:
            candidate.resolve().relative_to(base)
        except ValueError:
            problem = "a link there leads out of the folder"
        except (OSError, RuntimeError):  # link loops
            problem = "it is a link that cannot be resolved (a loop?)"
        else:
            return candidate
    raise UnsafePathError(
        f"{what}: refused {name!r}, which leads outside {folder} ({problem}); names in "
        f"dataset and COCO files must stay inside their folder"
    )


def _name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return "not a file name"
    if "\x00" in name:
        return "it contains a NUL character"
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        return "an absolute path"
    if ".." in posix.parts or ".." in windows.parts:
        return "it climbs out with '..'"
    return None
