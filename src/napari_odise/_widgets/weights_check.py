"""What a model choice lacks before Run: the released models need three files (ODISE head,
Stable Diffusion, CLIP), and finding out from a failed load after pressing Run named only the
first one. Cheap (file existence only, no hashing), so the Segment widget checks on every choice."""

from __future__ import annotations

from napari_odise.errors import UserError
from napari_odise.weights import files_for_model, model_names, weights_dir
from napari_odise.weights.manifest import WeightFile
from napari_odise.weights.own_files import own_files, stand_in

_ROLE_NAMES = {"odise": "ODISE head", "stable_diffusion": "Stable Diffusion", "clip": "CLIP"}


def missing_files(model: str) -> list[WeightFile]:
    """The manifest files of a released model that are neither in the weights folder nor stood
    in for by the user's own files (``weights use``/``import``); [] for other models."""
    if model not in model_names():
        return []  # tiny models need no files; a checkpoint path is checked when it is chosen
    try:
        own = own_files()
    except UserError:
        own = {}  # an unreadable record of own files: the load reports it
    return [f for f in files_for_model(model) if stand_in(f, own) is None and not f.local_path().is_file()]


def missing_advice(model: str) -> str | None:
    """What to do about a model's missing files (None: nothing is missing)."""
    missing = missing_files(model)
    if not missing:
        return None
    listed = ", ".join(f"{_ROLE_NAMES.get(f.role, f.role)} ({f.filename})" for f in missing)
    return (
        f"'{model}' needs {len(missing)} weight file(s) not in {weights_dir()}: {listed}. "
        f"Get them with `napari-odise weights download --model {model}` (or place your own with "
        "`napari-odise weights import` / `weights use`), or choose 'tiny' to try the plugin "
        "(random weights: meaningless segments)."
    )
