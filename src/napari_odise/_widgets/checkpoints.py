"""The fine-tuned checkpoints one viewer's widgets know about, so a model made or picked in one
widget becomes a model choice in the others.

The Fine-tune widget adds its result here, the Segment widget adds a file picked in its model
list; every widget that offers models lists these and follows :attr:`Checkpoints.added`.
Qt-free (a psygnal signal), so it lives in the :class:`~.session.Session`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from psygnal import Signal


class Checkpoints:
    added = Signal(str)  # the path, as the model lists show it

    def __init__(self):
        self._paths: list[str] = []

    def add(self, path: str | os.PathLike) -> str:
        """Remember a checkpoint file (once; absolute path) and tell the widgets; returns the path."""
        text = str(Path(path).absolute())
        if text not in self._paths:
            self._paths.append(text)
            self.added.emit(text)
        return text

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._paths))

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, path) -> bool:
        return str(Path(path).absolute()) in self._paths
