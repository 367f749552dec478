"""When the output folder itself cannot be written (disk full, read-only, no permission, a file in
the way), the whole run stops with one clear message instead of a traceback.

A failure of the run itself is not a failure of one image: going on would only fail every
remaining image the same way. Errors that are not about writing (a bug, a network error of a
cluster) are left alone so they still surface as what they are.
"""

from __future__ import annotations

import errno
from contextlib import contextmanager
from pathlib import Path

from napari_odise.errors import OdiseError, UserError

# errno values that say "this place cannot be written", whatever was being written there.
_WHAT_TO_DO = {
    errno.ENOSPC: "no space left on the device: free some space or use another --out, then run again to resume",
    errno.EDQUOT: "disk quota exceeded: free some space or use another --out, then run again to resume",
    errno.EFBIG: "file too large for the file system: use another --out",
    errno.EROFS: "the file system is read-only: use another --out",
    errno.EACCES: "permission denied: use a folder you can write to (--out)",
    errno.EPERM: "not permitted: use a folder you can write to (--out)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: use another --out",
    errno.EEXIST: "a file is in the way of a folder: use another --out",
    errno.EIO: "input/output error of the device: check the disk, then run again to resume",
}


class OutputWriteError(UserError, OSError):
    """The output folder cannot be written; the message names it and says what to do.

    Also an OSError (with the original ``errno``), as it was before."""


def is_write_failure(error: BaseException) -> bool:
    """An OSError that says the place cannot be written (not one of our own refusals)."""
    return isinstance(error, OSError) and not isinstance(error, OdiseError) and error.errno in _WHAT_TO_DO


def output_write_error(out: Path, error: OSError) -> OutputWriteError:
    """The one-line refusal for ``error``, raised while writing into ``out``."""
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(out) else ""
    converted = OutputWriteError(f"cannot write into {out}{where}: {_WHAT_TO_DO[error.errno]}")
    converted.errno = error.errno
    return converted


@contextmanager
def writing_into(out: Path):
    """Turn a write failure inside the block into :class:`OutputWriteError`; anything else passes."""
    try:
        yield
    except OSError as error:
        if not is_write_failure(error):
            raise
        raise output_write_error(out, error) from error
