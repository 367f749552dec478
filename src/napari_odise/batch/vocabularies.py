"""The vocabulary a user names on the command line or in the Batch widget."""

from __future__ import annotations

from pathlib import Path

from napari_odise.vocabulary import Vocabulary


def load_vocabulary(text: str) -> Vocabulary:
    """A preset name, a vocabulary JSON file, or a text file in the vocabulary syntax
    (one category per line, ``name: synonym, synonym``, ``(stuff)`` marks)."""
    path = Path(text)
    if path.is_file():
        if path.suffix.lower() == ".json":
            return Vocabulary.load(path)
        return Vocabulary.parse(path.read_text(encoding="utf-8"), name=path.stem)
    return Vocabulary.preset(text)
