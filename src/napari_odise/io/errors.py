"""The one error the io package raises for refused exports and unreadable datasets."""

from __future__ import annotations

from napari_odise.errors import UserError


class DatasetError(UserError, ValueError):
    """An export, import or merge that cannot proceed, with what is wrong and how to fix it.

    Raised before anything is written whenever the problem can be seen up front.
    """


def damaged(root, error: BaseException, nothing_changed: bool = False) -> DatasetError:
    """The refusal for a manifest or annotation entry that lacks a key or has the wrong type (a
    received dataset, hand-edited or cut short): names the folder and the first problem found."""
    after = "; nothing was changed" if nothing_changed else ""
    return DatasetError(
        f"{root} is damaged: an entry of its manifest or annotation files lacks a key or has the wrong "
        f"type ({type(error).__name__}: {error}){after}"
    )
