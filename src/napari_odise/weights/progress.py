"""Byte progress bars for downloads and hashing.

``progress`` is ``True`` (a tqdm bar on stderr), ``False`` (silent) or a tqdm-compatible class such
as ``napari.utils.progress``, so the GUI can show the same bars without this package importing Qt.
"""

from __future__ import annotations

from typing import Any


def byte_bar(progress: Any, *, total: int | None, desc: str, initial: int = 0):
    """A context-managed bar counting bytes; call ``.update(n)`` for each chunk."""
    from tqdm import tqdm

    bar_class = progress if isinstance(progress, type) else tqdm
    return bar_class(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=progress is False or progress is None,
        leave=False,
    )
