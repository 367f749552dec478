"""The one error the io package raises for refused exports and unreadable datasets."""

from __future__ import annotations

from napari_odise.errors import UserError


class DatasetError(UserError, ValueError):
    """An export, import or merge that cannot proceed, with what is wrong and how to fix it.

    Raised before anything is written whenever the problem can be seen up front.
    """
