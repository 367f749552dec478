"""JSON with one spelling per value, so the same data always gives the same bytes.

Keys are sorted, separators fixed, text kept as UTF-8 and the file ends with a newline. Floats use
Python's shortest round-trip form, so a value read back and written again is unchanged. NaN and
infinities are refused (strict JSON readers reject them): leave such keys out instead.
Annotation files are compact (they are large and read by programs); small files people read
(manifest, legend) are indented.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from napari_odise.atomic import atomic_write_text


def dumps(data, *, indent: int | None = None) -> str:
    separators = (",", ": ") if indent is not None else (",", ":")
    return (
        json.dumps(
            data, sort_keys=True, indent=indent, separators=separators, ensure_ascii=False,
            allow_nan=False,
        )
        + "\n"
    )


def write_json(path: str | os.PathLike, data, *, indent: int | None = None) -> Path:
    """Write ``data`` atomically in the stable spelling."""
    return atomic_write_text(path, dumps(data, indent=indent))


def read_json(path: str | os.PathLike):
    """JSON from a file; a UTF-8 byte-order mark (Windows editors write one) is skipped."""
    with open(path, encoding="utf-8-sig") as stream:
        return json.load(stream)
