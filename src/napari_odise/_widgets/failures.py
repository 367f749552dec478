"""How a widget reports a failure: a refusal as a notification, anything else as the bug it is.

A :class:`~napari_odise.errors.UserError` (bad input, missing weights, a refused file) says what
to do, so it becomes an error notification with the widget's name in front. Any other exception
is raised again, where napari reports it with its traceback (as it does for a worker error no
widget handles): a bug must not read as the user's mistake.
"""

from __future__ import annotations

from napari.utils.notifications import show_error

from napari_odise.errors import UserError

from .job import JobError


def refusal(error: BaseException) -> UserError | None:
    """The UserError behind ``error`` (itself, or the one a :class:`Job` wrapped), else None."""
    if isinstance(error, JobError):
        error = error.__cause__
    return error if isinstance(error, UserError) else None


def report(error: BaseException, what: str) -> None:
    """Show a refusal as ``what: message``; raise anything else again."""
    user_error = refusal(error)
    if user_error is None:
        raise error
    show_error(f"{what}: {user_error}")
