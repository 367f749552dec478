"""``<out>/batch.json``: how the results in an output folder were made, checked on every resume.

Resuming into a folder with another model, geometry or vocabulary would silently mix results
that do not belong together; comparing this manifest first turns that into a clear error.
"""

from __future__ import annotations

from pathlib import Path

from napari_odise.batch.store import header_differences
from napari_odise.errors import UserError
from napari_odise.io.stable_json import read_json, write_json

MANIFEST_NAME = "batch.json"
# What must agree between runs writing into one folder (the store also checks "embeddings").
COMPARED = ("format", "model", "precision", "encode_settings", "labels")


class OutputFolderError(UserError, ValueError):
    """The output folder holds results made differently; the message says what differs."""


def check(out: Path, manifest: dict) -> bool:
    """Raise if ``out`` holds results made differently; True if it has a manifest at all."""
    path = out / MANIFEST_NAME
    if not path.is_file():
        return False
    found = read_json(path)
    differences = header_differences({k: manifest.get(k) for k in COMPARED}, {k: found.get(k) for k in COMPARED})
    if differences:
        raise OutputFolderError(
            f"{out} holds results made differently ({'; '.join(differences)}): use another --out "
            "folder, or the same model, settings and vocabulary to resume"
        )
    return True


def check_or_write(out: Path, manifest: dict) -> None:
    if not check(out, manifest):
        write_json(out / MANIFEST_NAME, manifest, indent=1)
