"""One family of errors, so front ends can tell a refusal from a bug.

``UserError``: the input, a file, a setting or a missing download is the problem; the message
says what to do and is shown to the user as it is (the CLI exits with status 2, widgets show a
notification). Anything else that escapes is a bug in napari-odise and surfaces as one (a
traceback), never dressed up as a refusal.
"""

from __future__ import annotations


class OdiseError(Exception):
    """Base of every error napari-odise raises on purpose."""


class UserError(OdiseError):
    """Bad input, a refused or missing file, an impossible setting: the message tells what to do."""


class Cancelled(OdiseError):
    """Long work stopped because the user asked (Cancel, Ctrl+C); nothing half-done was kept."""


class InvalidInputError(UserError, ValueError):
    """An argument, option or setting that cannot be used as given.

    Also a ValueError, as these refusals were before the hierarchy, so ``except ValueError`` in
    existing scripts still catches them.
    """


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the work needs is not there; the message says which and what to do.

    Also a FileNotFoundError, as it was before the hierarchy.
    """
