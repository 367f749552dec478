"""The terminal progress bar of the long subcommands, closed before any message is printed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from napari_odise.errors import Cancelled


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator:
    """A :class:`~napari_odise.batch.TerminalProgress` for the block. Ctrl+C becomes
    :class:`Cancelled` (the CLI exits 130 and says to run again to resume); a refusal or a bug
    propagates after the bar is closed, so its message is not drawn over."""
    from napari_odise.batch import TerminalProgress

    progress = TerminalProgress(disable=quiet)
    try:
        yield progress
    except KeyboardInterrupt:
        progress.close(ok=False)
        raise Cancelled("interrupted: run the same command again to resume") from None
    except BaseException:
        progress.close(ok=False)
        raise
    progress.close()
