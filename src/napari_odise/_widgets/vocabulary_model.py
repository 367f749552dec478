"""The vocabulary a user is editing: presets ticked on and off, own categories, removals, renames.

Every change is an incremental edit of the current :class:`Vocabulary` (``+``, ``remove``,
``rename``), so a category keeps its id for as long as it stays: segments store category ids, and a
vocabulary edit must never make a segment silently point at another category. The model remembers
which presets brought each category, so unticking a preset removes only what no other ticked preset
(or the user) brought.
"""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal

from napari_odise.vocabulary import Vocabulary, VocabularyError

CUSTOM = "custom"


class VocabularyModel:
    changed = Signal()

    def __init__(self, presets: tuple[str, ...] = ("coco",)):
        self.vocabulary: Vocabulary | None = None
        self._sources: dict[int, set[str]] = {}  # category id -> presets / "custom" that brought it
        self._presets: list[str] = []
        for name in presets:
            self.set_preset(name, True, notify=False)

    @property
    def presets(self) -> list[str]:
        """Ticked presets, in the order they were ticked."""
        return list(self._presets)

    def require(self) -> Vocabulary:
        """The vocabulary, or an error saying how to get one."""
        if self.vocabulary is None:
            raise VocabularyError("the vocabulary is empty: tick a preset or add a category")
        return self.vocabulary

    # --- edits ---------------------------------------------------------------------------------
    def set_preset(self, name: str, ticked: bool, notify: bool = True) -> None:
        if ticked == (name in self._presets):
            return
        if ticked:
            self._presets.append(name)
            self._add(Vocabulary.preset(name), name)
        else:
            self._presets.remove(name)
            gone = [i for i, sources in self._sources.items() if sources == {name}]
            for sources in self._sources.values():
                sources.discard(name)
            self._drop(gone)
        if notify:
            self.changed.emit()

    def add_text(self, text: str) -> list[str]:
        """Add categories written in :meth:`Vocabulary.parse`'s syntax (``name: synonym, ...
        (stuff)``, one per line). Returns the names skipped because they already exist (by name,
        or as another name with the same synonyms)."""
        new = Vocabulary.parse(text)
        skipped = [c.name for c in new if self.vocabulary is not None and self.vocabulary.duplicate_of(c)]
        if len(skipped) < len(new):
            self._add(new.remove(*skipped) if skipped else new, CUSTOM)
            self.changed.emit()
        return skipped

    def remove(self, *names: str) -> None:
        vocabulary = self.require()
        self._drop([vocabulary.by_name(name).id for name in names])
        self.changed.emit()

    def rename(self, old: str, new: str) -> None:
        self.vocabulary = self.require().rename(old, new)
        self.changed.emit()

    def load(self, path: str | Path) -> None:
        """Replace everything by a vocabulary file (presets unticked)."""
        vocabulary = Vocabulary.load(path)
        self._presets = []
        self.vocabulary = vocabulary
        self._sources = {c.id: {CUSTOM} for c in vocabulary}
        self.changed.emit()

    def save(self, path: str | Path) -> None:
        self.require().save(path)

    # --- helpers -------------------------------------------------------------------------------
    def _add(self, addition: Vocabulary, source: str) -> None:
        merged = addition if self.vocabulary is None else self.vocabulary + addition
        for category in addition:
            self._sources.setdefault(merged.duplicate_of(category).id, set()).add(source)
        self.vocabulary = merged

    def _drop(self, ids: list[int]) -> None:
        for category_id in ids:
            self._sources.pop(category_id, None)
        if self.vocabulary is None or not ids:
            return
        if set(ids) >= set(self.vocabulary.ids):
            self.vocabulary = None
        else:
            self.vocabulary = self.vocabulary.remove(*ids)
