"""Replacing images in a dataset in one commit: staged files and a journal.

An append commits by writing the manifest last (see :mod:`~napari_odise.io.contents`). A
replacement cannot: its new PNGs and JSON entries take the places of the old ones, so writing
them one by one would leave a killed export with old and new mixed. Instead every file of the
transaction is first written under a hidden staged name beside its final place; then one atomic
write of ``.export-journal.json`` (the list of renames and of files to delete) is the commit
point; then the renames and deletions are carried out ("rolled forward") and the journal removed.

A kill before the journal is written leaves the old dataset untouched (the staged files are
temporaries that the next export clears); a kill after it leaves a journal that the next export,
or the next reader, rolls forward under the dataset lock. Rolling forward twice is harmless: a
staged file that is gone was renamed already.

A journal comes from the folder, and a received folder is someone else's data: every name in it
must be a staged temporary beside a final place inside the dataset (:func:`~.paths.inside`).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from napari_odise.atomic import TEMP_SUFFIX, atomic_write_text, fsync_directory
from napari_odise.io.errors import DatasetError
from napari_odise.io.paths import inside

JOURNAL_NAME = ".export-journal.json"
JOURNAL_FORMAT = "napari-odise-export-journal"


class Staging:
    """Collects a transaction's files under staged names; :meth:`commit` makes them final."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.renames: list[tuple[Path, Path]] = []  # (staged, final), in commit order
        self.removals: list[Path] = []

    def place(self, final: Path) -> Path:
        """Where to write the file that will become ``final`` (a hidden name beside it)."""
        final = Path(final)
        staged = final.with_name(f".{final.name}.{secrets.token_hex(6)}.staged{TEMP_SUFFIX}")
        self.renames.append((staged, final))
        return staged

    def remove_after_commit(self, path: Path) -> None:
        self.removals.append(Path(path))

    def commit(self) -> None:
        """Write the journal (the commit point), then roll it forward."""
        journal = {
            "format": JOURNAL_FORMAT,
            "renames": [[self._relative(s), self._relative(f)] for s, f in self.renames],
            "remove": [self._relative(p) for p in self.removals],
        }
        atomic_write_text(self.root / JOURNAL_NAME, json.dumps(journal, indent=1))
        roll_forward(self.root)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def pending(root: Path) -> bool:
    """True when a committed replacement has not been rolled forward yet."""
    return (Path(root) / JOURNAL_NAME).is_file()


def roll_forward(root: Path) -> bool:
    """Finish a committed replacement (call under the dataset lock); False when none is pending."""
    root = Path(root)
    path = root / JOURNAL_NAME
    if not path.is_file():
        return False
    renames, removals = _read(root, path)
    folders = set()
    for staged, final in renames:
        if staged.is_file():
            staged.replace(final)
            folders.add(final.parent)
    for victim in removals:
        victim.unlink(missing_ok=True)
    for folder in folders:
        fsync_directory(folder)
    path.unlink()
    fsync_directory(root)
    return True


def _read(root: Path, path: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    what = f"{path}"
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
        if journal.get("format") != JOURNAL_FORMAT:
            raise ValueError("not an export journal")
        pairs = [(str(s), str(f)) for s, f in journal["renames"]]
        removals = [str(p) for p in journal["remove"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise DatasetError(
            f"{path} is damaged ({error}): an interrupted replacement cannot be finished; move "
            f"the file away to keep the dataset as its manifest.json describes it"
        ) from None
    renames = []
    for staged_name, final_name in pairs:
        staged, final = inside(root, staged_name, what), inside(root, final_name, what)
        if staged.parent != final.parent or not (
            staged.name.startswith(f".{final.name}.") and staged.name.endswith(f".staged{TEMP_SUFFIX}")
        ):
            raise DatasetError(f"{what}: refused rename {staged_name!r} -> {final_name!r}, "
                               f"which is not a staged file beside its place")
        renames.append((staged, final))
    return renames, [inside(root, name, what) for name in removals]
