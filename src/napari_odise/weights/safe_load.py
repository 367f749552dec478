"""Read a checkpoint's tensors without ever executing code from the file.

* ``.safetensors``: safetensors (a header plus raw bytes; nothing to execute).
* PyTorch pickles (``.pth``, ``.ckpt``, ``.pt``, ``.bin``): ``torch.load(weights_only=True)``,
  memory-mapped when the file is a zip archive (every file saved by torch >= 1.6). A file that
  needs anything beyond tensors and plain containers is refused with UnsafeCheckpointError;
  the only extras admitted are listed in :mod:`pickle_allowlist`.
* TorchScript archives (OpenAI's CLIP ``.pt``): :mod:`torchscript` reads the tensors with a
  restricted unpickler instead of ``torch.jit.load``.

Checkpoints wrap their weights differently: detectron2 (ODISE) under ``"model"``, ldm / Lightning
(Stable Diffusion) under ``"state_dict"``. :func:`load_checkpoint` returns the inner dict and says
which wrapper it was; mapping key names onto the model is the model code's job.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from napari_odise.errors import MissingFileError

from .errors import CorruptCheckpointError, UnsafeCheckpointError
from .pickle_allowlist import allow_harmless_extras
from .torchscript import is_torchscript_archive, load_torchscript_state_dict

#: Keys under which checkpoint formats keep their weights, tried in this order.
CONTAINER_KEYS = ("model", "state_dict")
#: Top-level entries copied into ``Checkpoint.extras`` when they are small plain values.
_PLAIN = (int, float, str, bool)


@dataclass
class Checkpoint:
    """The weights of one file plus where they were found.

    ``container`` is the top-level key that held them ("model" for detectron2, "state_dict" for
    ldm/Lightning) or None when the file is the state dict itself. ``format`` is "pickle",
    "torchscript" or "safetensors". ``extras`` keeps small top-level values (iteration,
    global_step, ...); ``metadata`` is a safetensors header's string metadata; ``skipped`` names
    entries of the state dict that were not tensors (dropped).
    """

    state_dict: dict[str, torch.Tensor]
    container: str | None
    format: str
    path: Path
    extras: dict[str, object] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    if is_torchscript_archive(path):
        return Checkpoint(load_torchscript_state_dict(path), None, "torchscript", path)
    return _unwrap(_load_pickle(path), path)


def load_checkpoint_shapes(path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors as meta tensors (name, shape, dtype; no values), for checking a
    file against a model without converting it: a safetensors header is all that is read; other
    formats are memory-mapped where they can be, so their values are not read either."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        return _safetensors_shapes(path)
    return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in load_checkpoint(path).state_dict.items()}


def _safetensors_shapes(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            entries = {key: handle.get_slice(key) for key in handle.keys()}
            shapes = {key: (tuple(part.get_shape()), part.get_dtype()) for key, part in entries.items()}
    except Exception as error:  # SafetensorError is not exported under a stable name
        raise CorruptCheckpointError(f"{path} is not a valid safetensors file: {error}") from None
    return {
        key: torch.empty(shape, dtype=_SAFETENSORS_DTYPES.get(dtype, torch.float32), device="meta")
        for key, (shape, dtype) in shapes.items()
    }


#: safetensors' dtype names (those a weights file holds) -> torch dtypes
_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def _load_safetensors(path: Path) -> Checkpoint:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        state = load_file(str(path), device="cpu")
    except Exception as error:  # SafetensorError is not exported under a stable name
        raise CorruptCheckpointError(f"{path} is not a valid safetensors file: {error}") from None
    return Checkpoint(state, None, "safetensors", path, metadata=metadata)


def _load_pickle(path: Path):
    mmap = zipfile.is_zipfile(path)  # torch memory-maps only its zip format
    with allow_harmless_extras():
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as error:
            raise _unsafe_error(path, error) from None
        except Exception as error:  # truncated zip, not a pickle at all, unknown storage, ...
            raise CorruptCheckpointError(
                f"{path} could not be read as a PyTorch checkpoint ({type(error).__name__}: {error}). "
                "It is probably truncated or damaged: delete it and download it again."
            ) from None


def _unsafe_error(path: Path, error: Exception) -> UnsafeCheckpointError:
    """Name the globals the file wanted, found by a static scan (nothing is imported or run)."""
    names: list[str] = []
    scan = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if scan is not None and zipfile.is_zipfile(path):
        try:
            names = list(scan(path))
        except Exception:
            names = []
    if not names:
        names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", _plain(str(error)))))
    wanted = f"it refers to {', '.join(names)}" if names else f"the unpickler refused it{_reason(error)}"
    return UnsafeCheckpointError(
        f"{path} is not a plain weights file: {wanted}. Loading it would import or call Python code "
        "from the file, which could do anything on this computer, so napari-odise refused it; nothing "
        "from the file was executed. If this should be an official checkpoint, delete it and download "
        "it again (`napari-odise weights download`)."
    )


def _plain(text: str) -> str:
    """Text without terminal colour codes (some torch versions colour their advice)."""
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _reason(error: Exception) -> str:
    """torch's own reason, without its advice to load with weights_only=False (which would run
    the file's code: the one thing never to do with a file that fails this check)."""
    lines = [line.strip() for line in _plain(str(error)).splitlines()]
    kept = [
        line for line in lines
        if line and "weights_only" not in line and "documentation" not in line
        and "Weights only load failed" not in line
    ]
    return f" ({kept[0]})" if kept else ""


def _unwrap(loaded, path: Path) -> Checkpoint:
    if not isinstance(loaded, dict):
        raise CorruptCheckpointError(f"{path} holds a {type(loaded).__name__}, not a dict of tensors")
    container = next((key for key in CONTAINER_KEYS if isinstance(loaded.get(key), dict)), None)
    inner = loaded[container] if container else loaded
    extras = {k: v for k, v in loaded.items() if k != container and isinstance(v, _PLAIN)} if container else {}
    state: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in inner.items():
        tensor = _as_tensor(value)
        if tensor is None:
            skipped.append(str(key))
        else:
            state[str(key)] = tensor
    if not state:
        where = f"under {container!r}" if container else "at the top level"
        raise CorruptCheckpointError(f"{path} has no tensors {where}: not a weights file napari-odise knows")
    return Checkpoint(state, container, "pickle", path, extras=extras, skipped=skipped)


def _as_tensor(value) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    try:
        import numpy as np
    except ImportError:
        return None
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(value)
    return None
