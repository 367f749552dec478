"""Errors of the weight-file infrastructure; each message says what happened and what to do next."""

from __future__ import annotations

from napari_odise.errors import UserError


class WeightsError(UserError, RuntimeError):
    """Base class, so callers (the GUI, the CLI) can catch every weight-file problem at once."""


class WeightsUnavailableError(WeightsError):
    """A weight file is not here and could not be downloaded (offline, refused, not found).

    ``url`` and ``path`` are kept as attributes so a GUI can offer "open URL" / "show folder".
    """

    def __init__(self, message: str, *, url: str | None = None, path=None):
        super().__init__(message)
        self.url = url
        self.path = path


class ChecksumMismatchError(WeightsError):
    """A file's sha256 differs from the published one: wrong file, or damaged in transfer."""

    def __init__(self, message: str, *, expected: str = "", got: str = "", path=None):
        super().__init__(message)
        self.expected = expected
        self.got = got
        self.path = path


class UnsafeCheckpointError(WeightsError):
    """A checkpoint would run code (or import arbitrary objects) when unpickled; it was refused."""


class CorruptCheckpointError(WeightsError):
    """A checkpoint could not be read as a weights file (truncated, damaged, unknown format)."""


class UnknownWeightError(UserError, KeyError):
    """A weight name that the manifest does not list."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""
