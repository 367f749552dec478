"""One writer per dataset at a time: an advisory lock on ``DATASET/.lock``.

Two exports interleaving their read-modify-write of the JSON files would lose one of them, so a
second writer is refused at once (with a clear message) rather than left waiting. The operating
system drops the lock when the process dies, so a crash never leaves a dataset locked. Where
``fcntl`` is missing (Windows) there is no lock: run one export at a time there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from napari_odise.io.errors import DatasetError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class DatasetBusyError(DatasetError):
    """Another process holds the dataset's lock."""


@contextmanager
def dataset_lock(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetBusyError(
                f"another export is writing into {lock_path.parent}: wait until it finishes "
                f"(parallel runs should export to separate datasets and merge them)"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
