"""The official weight files, read from the packaged ``weights_manifest.json``.

The manifest is data, not code, so the list of files (URLs, hashes, licences) can be reviewed and
updated without touching the loaders. Tests swap in their own manifest by patching
:func:`load_manifest`; every other function here goes through it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from .errors import UnknownWeightError
from .paths import weights_dir

MANIFEST_RESOURCE = "weights_manifest.json"
SUPPORTED_FORMAT = 1
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file. ``sha256`` is the full digest when published, else ``sha256_prefix``."""

    name: str
    role: str
    filename: str
    url: str
    licence: str
    description: str = ""
    sha256: str | None = None
    sha256_prefix: str | None = None
    size_bytes: int | None = None
    licence_url: str | None = None
    requires_login: bool = False

    def __post_init__(self):
        for label, value in (("sha256", self.sha256), ("sha256_prefix", self.sha256_prefix)):
            if value is not None and not _HEX.match(value):
                raise ValueError(f"{self.name}: {label} must be lower-case hex, got {value!r}")
        if self.sha256 is not None and len(self.sha256) != 64:
            raise ValueError(f"{self.name}: sha256 must have 64 hex digits, got {len(self.sha256)}")
        if self.sha256 is None and not self.sha256_prefix:
            raise ValueError(f"{self.name}: the manifest gives neither sha256 nor sha256_prefix")
        if "/" in self.filename or "\\" in self.filename or self.filename in ("", ".", ".."):
            raise ValueError(f"{self.name}: filename must be a plain file name, got {self.filename!r}")

    @classmethod
    def from_dict(cls, entry: dict) -> WeightFile:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in entry.items() if k in known})

    @property
    def expected_digest(self) -> str:
        """What a file's sha256 must equal (full digest) or start with (prefix)."""
        return self.sha256 or self.sha256_prefix or ""

    def local_path(self) -> Path:
        """Where the file lives (or must be put by hand): ``<home>/weights/<filename>``."""
        return weights_dir() / self.filename


@dataclass(frozen=True)
class Manifest:
    files: tuple[WeightFile, ...]
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        if data.get("format") != SUPPORTED_FORMAT:
            raise ValueError(f"weights manifest format {data.get('format')!r} is not {SUPPORTED_FORMAT}")
        weight_files = tuple(WeightFile.from_dict(entry) for entry in data["files"])
        names = [w.name for w in weight_files]
        if len(set(names)) != len(names):
            raise ValueError(f"weights manifest lists a name twice: {names}")
        models = {model: tuple(members) for model, members in data.get("models", {}).items()}
        for model, members in models.items():
            unknown = set(members) - set(names)
            if unknown:
                raise ValueError(f"weights manifest model {model!r} names unknown files {sorted(unknown)}")
        return cls(weight_files, models)


@lru_cache(maxsize=1)
def load_manifest() -> Manifest:
    """The manifest shipped inside the package (a symlink to ``weights/manifest.json`` in the repo)."""
    text = files("napari_odise").joinpath(MANIFEST_RESOURCE).read_text(encoding="utf-8")
    return Manifest.from_dict(json.loads(text))


def all_files() -> tuple[WeightFile, ...]:
    return load_manifest().files


def get(name: str | WeightFile) -> WeightFile:
    """The manifest entry called ``name``; a WeightFile passes through, so APIs accept either."""
    if isinstance(name, WeightFile):
        return name
    for weight_file in load_manifest().files:
        if weight_file.name == name:
            return weight_file
    known = ", ".join(w.name for w in load_manifest().files)
    raise UnknownWeightError(f"unknown weight file {name!r}; the manifest lists: {known}")


def model_names() -> tuple[str, ...]:
    return tuple(load_manifest().models)


def files_for_model(model: str) -> list[WeightFile]:
    """The files one model needs, e.g. ``"official"`` -> ODISE label head, SD v1.3, CLIP."""
    models = load_manifest().models
    if model not in models:
        raise UnknownWeightError(f"unknown model {model!r}; the manifest has: {', '.join(models)}")
    return [get(name) for name in models[model]]
