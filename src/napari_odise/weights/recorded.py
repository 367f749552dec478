"""Full digests recorded for files the manifest knows only by a hash prefix.

The ODISE release publishes just the first 8 hex digits of each file's sha256 (in its name).
Matching 32 bits is a check against damage, not against a substitute: a file with a chosen
8-digit prefix takes minutes to make. So the first time such a file is imported, downloaded or
verified, its full sha256 and size are written to ``<home>/recorded_digests.json``, and from then
on it must match those exactly (trust on first use, as ssh does with host keys).

``weights status`` says, per file, whether it is checked by a full digest the manifest publishes,
by a full digest recorded here (and when), or only by the prefix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from napari_odise.atomic import atomic_write_text

from .manifest import WeightFile
from .paths import home_dir

FORMAT = 1

PUBLISHED = "full sha256 (published)"
PREFIX_ONLY = "sha256 prefix only"
RECORDED = "full sha256 (recorded {date})"


@dataclass(frozen=True)
class Recorded:
    sha256: str
    size: int
    recorded: str  # ISO time of the first import, download or verification


def recorded_digests_path() -> Path:
    return home_dir() / "recorded_digests.json"


def _read() -> dict:
    try:
        data = json.loads(recorded_digests_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # damaged: the next import records afresh (status then says prefix only)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def _write(entries: dict) -> None:
    atomic_write_text(recorded_digests_path(), json.dumps({"format": FORMAT, "files": entries}, indent=1, sort_keys=True))


def recorded(weight_file: WeightFile) -> Recorded | None:
    """The full digest recorded for a prefix-only file (None for published digests or none yet)."""
    if weight_file.sha256:
        return None
    entry = _read().get(weight_file.name)
    if not isinstance(entry, dict):
        return None
    digest, size = entry.get("sha256"), entry.get("size")
    if not (isinstance(digest, str) and len(digest) == 64 and isinstance(size, int)):
        return None
    if not digest.startswith(weight_file.sha256_prefix or ""):
        return None  # not a record of this manifest's file
    return Recorded(digest, size, str(entry.get("recorded", "")))


def record_first(weight_file: WeightFile, digest: str, size: int) -> None:
    """Record a prefix-only file's full digest and size, unless one is recorded already."""
    if weight_file.sha256 or recorded(weight_file) is not None:
        return
    entries = _read()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entries[weight_file.name] = {"sha256": digest.lower(), "size": int(size), "recorded": stamp,
                                 "filename": weight_file.filename}
    _write(entries)


def verified_by(weight_file: WeightFile) -> str:
    """How a file is checked: published full digest, recorded full digest, or prefix only."""
    if weight_file.sha256:
        return PUBLISHED
    found = recorded(weight_file)
    if found is not None:
        return RECORDED.format(date=found.recorded[:10])
    return PREFIX_ONLY
