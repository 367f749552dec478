"""One batch at a time per output folder: a second run into the same folder would delete the
first one's unfinished work when it cleans up. The lock is an OS file lock, so a killed run
releases it by dying."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from napari_odise.batch.output_errors import writing_into
from napari_odise.errors import UserError

LOCK_NAME = ".batch.lock"


class FolderBusyError(UserError, RuntimeError):
    """Another run holds the output folder; the message says to wait or choose another folder."""


@contextmanager
def folder_lock(out: Path):
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; run one batch per folder by hand
        yield
        return
    with writing_into(out):  # read-only, a file in the way: a message, not a traceback
        out.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(f"another batch is writing into {out}; wait for it or use another --out") from None
        yield
    finally:
        os.close(descriptor)
