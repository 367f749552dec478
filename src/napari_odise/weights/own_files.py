"""Stable Diffusion and CLIP files of the user's own, used instead of the manifest's.

Many users already have SD v1.x (a diffusers folder in the Hugging Face cache, a ``.safetensors``)
and CLIP ViT-L-14-336 (open_clip's download) and should not fetch 5 GB again. The manifest's files
are verified by hash; these cannot be, so they are recorded by path (no copy), checked strictly
(every key and shape) when the model loads, and listed by ``napari-odise weights status``.
ODISE's own checkpoints have published hashes: ``weights import`` is the way for those.
"""

from __future__ import annotations

import json
from pathlib import Path

from napari_odise.atomic import atomic_write_text
from napari_odise.errors import InvalidInputError, MissingFileError

from .importing import ROLES as MANIFEST_ROLES
from .paths import home_dir

ROLES = {"sd": "Stable Diffusion v1.x (ldm .ckpt/.safetensors or a diffusers folder)", "clip": "CLIP ViT-L-14-336"}


def stand_in_flag(manifest_role: str) -> str | None:
    """The ``weights use`` option for files of a manifest role ("--sd"), None for the ODISE heads."""
    return next((f"--{role}" for role in ROLES if MANIFEST_ROLES[role] == manifest_role), None)


def own_files_path() -> Path:
    return home_dir() / "own_files.json"


def own_files() -> dict[str, Path]:
    """Role ("sd", "clip") -> the user's file or folder, for the roles set with :func:`use_own_files`."""
    path = own_files_path()
    if not path.is_file():
        return {}
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"{path} is unreadable ({error}); fix or delete it, then set your files again") from None
    return {role: Path(value) for role, value in recorded.items() if role in ROLES}


def use_own_files(**paths: str | Path | None) -> dict[str, Path]:
    """Record files to use for the given roles (``sd=``, ``clip=``); returns every recorded role."""
    unknown = set(paths) - set(ROLES)
    if unknown:
        raise InvalidInputError(f"own files can replace {sorted(ROLES)} only, not {sorted(unknown)}")
    recorded = own_files()
    for role, value in paths.items():
        if value is None:
            continue
        path = Path(value).expanduser().resolve()
        if not path.exists():
            raise MissingFileError(f"{path} does not exist: give the {ROLES[role]} file or folder")
        recorded[role] = path
    _save(recorded)
    return recorded


def forget_own_files(*roles: str) -> dict[str, Path]:
    """Go back to the manifest's files for ``roles`` (all roles when none given)."""
    recorded = {role: path for role, path in own_files().items() if roles and role not in roles}
    _save(recorded)
    return recorded


def _save(recorded: dict[str, Path]) -> None:
    path = own_files_path()
    if not recorded:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({role: str(p) for role, p in sorted(recorded.items())}, indent=2) + "\n")
