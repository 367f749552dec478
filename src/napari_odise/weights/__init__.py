"""The official weight files: where they live, downloading and verifying them, reading them
without executing code, and the safetensors cache that makes later starts fast.

Everything here except checkpoint reading is importable without torch, so
``napari-odise weights status`` starts quickly; ``load_checkpoint`` and ``Checkpoint`` are
imported on first use.
"""

from __future__ import annotations

from importlib import import_module

from .cache import cache_metadata, cache_path, cache_problem, clear_cache, read_cache, write_cache
from .download import download, ensure_file
from .errors import (
    ChecksumMismatchError,
    CorruptCheckpointError,
    UnknownWeightError,
    UnsafeCheckpointError,
    WeightsError,
    WeightsUnavailableError,
)
from .hashing import digest_matches, file_sha256, sha256_file, verify_file
from .importing import ImportedFile, import_files
from .own_files import forget_own_files, own_files, use_own_files
from .manifest import Manifest, WeightFile, all_files, files_for_model, get, model_names
from .paths import cache_dir, home_dir, weights_dir
from . import recorded
from .sources import resolve_url
from .status import FileStatus, status

_NEEDS_TORCH = {"Checkpoint": "safe_load", "load_checkpoint": "safe_load"}

__all__ = [
    "Checkpoint",
    "ChecksumMismatchError",
    "CorruptCheckpointError",
    "FileStatus",
    "ImportedFile",
    "Manifest",
    "UnknownWeightError",
    "UnsafeCheckpointError",
    "WeightFile",
    "WeightsError",
    "WeightsUnavailableError",
    "all_files",
    "cache_dir",
    "cache_metadata",
    "cache_path",
    "cache_problem",
    "clear_cache",
    "digest_matches",
    "download",
    "ensure_file",
    "file_sha256",
    "files_for_model",
    "forget_own_files",
    "get",
    "home_dir",
    "import_files",
    "load_checkpoint",
    "model_names",
    "own_files",
    "read_cache",
    "recorded",
    "resolve_url",
    "sha256_file",
    "status",
    "use_own_files",
    "verify_file",
    "weights_dir",
    "write_cache",
]


def __getattr__(name: str):
    module = _NEEDS_TORCH.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
