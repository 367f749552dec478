"""Files of the user's own, used instead of the manifest's.

Many users already have SD v1.x (a diffusers folder in the Hugging Face cache, a ``.safetensors``)
and CLIP ViT-L-14-336 (open_clip's download) and should not fetch 5 GB again. The manifest's files
are verified by hash; these cannot be, so they are checked strictly (every key and shape) when
``napari-odise weights use`` records them (by path, no copy), checked again when the model loads,
and listed by ``napari-odise weights status``.

An ODISE head that is not the released file (re-saved, converted, from a mirror) but fits the
official head key by key is copied into the weights folder by ``weights import`` and recorded here
under the name of the manifest file it replaces (e.g. ``odise_label_coco_50e``).
"""

from __future__ import annotations

import json
from pathlib import Path

from napari_odise.atomic import atomic_write_text
from napari_odise.errors import InvalidInputError, MissingFileError

from .importing import ROLES as MANIFEST_ROLES
from .manifest import WeightFile, all_files
from .paths import home_dir, weights_dir

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
    known = set(ROLES) | _head_names()
    return {key: Path(value) for key, value in recorded.items() if key in known}


def stand_in(weight_file: WeightFile, own: dict[str, Path] | None = None) -> Path | None:
    """The user's file used instead of ``weight_file``: a head imported for it, or the file set
    with ``weights use`` for its role; None when the manifest's file is used."""
    own = own_files() if own is None else own
    if weight_file.name in own:
        return own[weight_file.name]
    return next((path for role, path in own.items() if role in ROLES and MANIFEST_ROLES[role] == weight_file.role), None)


def use_own_files(check: bool = True, **paths: str | Path | None) -> dict[str, Path]:
    """Record files to use for the given roles (``sd=``, ``clip=``); returns every recorded entry.

    Each file is checked key by key and shape by shape against the official model first
    (``check=False`` skips that, for files of a test model); a file that does not fit is refused
    and nothing is recorded.
    """
    unknown = set(paths) - set(ROLES)
    if unknown:
        raise InvalidInputError(f"own files can replace {sorted(ROLES)} only, not {sorted(unknown)}")
    given = {}
    for role, value in paths.items():
        if value is None:
            continue
        path = Path(value).expanduser().resolve()
        if not path.exists():
            raise MissingFileError(f"{path} does not exist: give the {ROLES[role]} file or folder")
        given[role] = path
    if check:
        from napari_odise.checkpoints.stand_in_checks import check_stand_in  # reads the file's tensors

        for role, path in given.items():
            check_stand_in(role, path)
    recorded = {**own_files(), **given}
    _save(recorded)
    return recorded


def use_own_head(weight_file: WeightFile, path: Path) -> None:
    """Record a head placed in the weights folder by ``weights import`` for ``weight_file``
    (deleting the copy of the head it replaces, if ``weights import`` made one)."""
    previous = own_files().get(weight_file.name)
    _save({**own_files(), weight_file.name: Path(path)})
    if previous is not None and previous != Path(path) and previous.parent == weights_dir():
        previous.unlink(missing_ok=True)


def forget_own_files(*keys: str) -> dict[str, Path]:
    """Go back to the manifest's files for ``keys`` (roles or head names; all when none given).

    A forgotten head's copy in the weights folder (made by ``weights import``) is deleted.
    """
    own = own_files()
    forgotten = {key: path for key, path in own.items() if not keys or key in keys}
    recorded = {key: path for key, path in own.items() if key not in forgotten}
    _save(recorded)
    for key, path in forgotten.items():
        if key in _head_names() and path.parent == weights_dir() and path not in recorded.values():
            path.unlink(missing_ok=True)
    return recorded


def own_head_path(weight_file: WeightFile, digest: str, suffix: str) -> Path:
    """Where ``weights import`` puts a head that is not the released file (named by its own hash)."""
    return weights_dir() / f"{weight_file.name}-own-{digest[:8]}{suffix}"


def _head_names() -> set[str]:
    return {w.name for w in all_files() if w.role == MANIFEST_ROLES["odise"]}


def _save(recorded: dict[str, Path]) -> None:
    path = own_files_path()
    if not recorded:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({role: str(p) for role, p in sorted(recorded.items())}, indent=2) + "\n")
