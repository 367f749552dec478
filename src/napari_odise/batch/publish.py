"""Publishing a folder atomically: build it under a temporary name, then rename it into place.

A zarr group is many files; no single file write can make it appear whole. So every group the
batch writes is built in a private folder next to the store (same file system), its files are
fsynced, and one ``os.rename`` gives it its final name. Whatever is at a final name is therefore
complete; a killed writer leaves only a private folder, which the next run deletes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from napari_odise.atomic import fsync_directory


def partial_root(store: Path) -> Path:
    """Where the store's groups are built: a hidden sibling folder, outside the zarr hierarchy."""
    return store.parent / f".{store.name}.partial"


def new_partial_folder(store: Path) -> Path:
    root = partial_root(store)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root, prefix=f"{os.getpid()}-"))


def clear_partials(store: Path) -> int:
    """Delete every unfinished folder; only while no other process writes into this store."""
    root = partial_root(store)
    if not root.is_dir():
        return 0
    leftovers = list(root.iterdir())
    shutil.rmtree(root, ignore_errors=True)
    return len(leftovers)


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            descriptor = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        fsync_directory(root)


def publish(folder: Path, final: Path, is_complete: Callable[[Path], bool]) -> bool:
    """Rename ``folder`` to ``final``; False if a complete ``final`` already existed (kept as is).

    An incomplete ``final`` (never made by this module, but possibly by hand or older tools) is
    replaced.
    """
    _fsync_tree(folder)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(folder, final)
    except OSError:
        if not final.exists():
            raise
        if is_complete(final):
            shutil.rmtree(folder, ignore_errors=True)
            return False
        shutil.rmtree(final)
        os.rename(folder, final)
    fsync_directory(final.parent)
    return True


def remove_folder(folder: Path, store: Path) -> None:
    """Delete a published folder of ``store`` so that it disappears at once (renamed away first)."""
    if not folder.exists():
        return
    doomed = new_partial_folder(store) / "doomed"
    os.rename(folder, doomed)
    shutil.rmtree(doomed.parent, ignore_errors=True)

