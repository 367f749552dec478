"""Where napari-odise keeps weight files: one home folder, overridable for tests and shared installs.

``home/weights/`` holds the original files under their official names (the place to put files
downloaded by hand); ``home/cache/`` holds safetensors conversions that can always be rebuilt.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "NAPARI_ODISE_HOME"


def home_dir() -> Path:
    """``$NAPARI_ODISE_HOME``, else the user's cache folder (e.g. ~/.cache/napari-odise on Linux).

    Read on every call (not at import) so a changed environment, as in tests, takes effect.
    """
    value = os.environ.get(HOME_ENV, "").strip()
    if value:
        return Path(value).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-odise")).resolve()


def weights_dir() -> Path:
    return home_dir() / "weights"


def cache_dir() -> Path:
    return home_dir() / "cache"


def hash_index_path() -> Path:
    return home_dir() / "hash_index.json"
