"""Converted weights as safetensors in ``<home>/cache/``, for fast, memory-mapped starts.

A cache file is always rebuildable from the original checkpoint, so any doubt about it is a cache
miss: :func:`read_cache` deletes a damaged file and returns None, and the caller converts again.

Each file's safetensors metadata records the source file's sha256, the cache format version, the
dtype, the tensor count and two CRC-32 checksums (sorted by tensor name):

* ``checksum``: names, shapes, byte lengths and the first and last 4 KiB of every tensor. Checked
  on every read: it costs a few MB of reads and catches truncation and header damage.
* ``data_crc32``: every byte of every tensor, checked only with ``deep=True`` (about 1 s per GB).

Writes are atomic (temporary file in the same folder, fsync, rename), so a crash never leaves a
half-written file under the final name.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from napari_odise.atomic import fsync_directory

from .paths import cache_dir

if TYPE_CHECKING:  # torch is imported where tensors are handled, so importing this module is cheap
    import torch

log = logging.getLogger(__name__)

CACHE_FORMAT = "1"
SAMPLE_BYTES = 4096
_MAX_HEADER_BYTES = 100 << 20
_KIND = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_KEY = "napari_odise."


def dtype_label(dtype: torch.dtype | str | None) -> str:
    """``torch.float16`` -> "float16"; None (keep each tensor's own dtype) -> "original"."""
    if dtype is None:
        return "original"
    return str(dtype).removeprefix("torch.")


def cache_path(kind: str, source_sha256: str, dtype: torch.dtype | str | None = None) -> Path:
    """``<home>/cache/<kind>-<first 16 hex of the source sha256>-<dtype>.safetensors``.

    ``kind`` names the conversion (e.g. "sd-unet", "clip", "odise-head"), so several caches can
    come from one source file; a new source file (new sha256) never reuses an old cache.
    """
    if not _KIND.match(kind):
        raise ValueError(f"cache kind must be lower-case letters, digits, '-', '_' or '.', got {kind!r}")
    if not re.fullmatch(r"[0-9a-f]{16,64}", source_sha256 or ""):
        raise ValueError(f"source_sha256 must be a hex sha256 digest, got {source_sha256!r}")
    return cache_dir() / f"{kind}-{source_sha256[:16]}-{dtype_label(dtype)}.safetensors"


def _raw_bytes(tensor: torch.Tensor) -> torch.Tensor:
    import torch

    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def _checksums(entries) -> tuple[str, str | None]:
    """CRC-32s over ``(name, shape, nbytes, head bytes, tail bytes)`` and, if given, all bytes.

    ``entries`` yields ``(name, shape, nbytes, read(start, stop) -> bytes, full_bytes or None)`` in
    name order, the same whether it comes from tensors in memory or from a file on disk.
    """
    sampled, full = 0, 0
    any_full = False
    for name, shape, nbytes, read, whole in entries:
        sampled = zlib.crc32(f"{name}\0{list(shape)}\0{nbytes}\0".encode(), sampled)
        head = min(SAMPLE_BYTES, nbytes)
        sampled = zlib.crc32(read(0, head), sampled)
        sampled = zlib.crc32(read(max(head, nbytes - SAMPLE_BYTES), nbytes), sampled)
        if whole is not None:
            any_full = True
            full = zlib.crc32(whole(), full)
    return f"{sampled:08x}", (f"{full:08x}" if any_full else None)


def _memory_entries(tensors: dict[str, torch.Tensor]):
    for name in sorted(tensors):
        raw = _raw_bytes(tensors[name])
        array = raw.numpy()
        yield (
            name,
            tuple(tensors[name].shape),
            raw.numel(),
            (lambda a, b, array=array: array[a:b].tobytes()),
            (lambda array=array: array),
        )


def _prepare(state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """CPU, contiguous, optionally converted tensors; shared storages are copied (safetensors
    refuses tensors that share memory, e.g. tied weights)."""
    import torch

    prepared: dict[str, torch.Tensor] = {}
    seen_storages: set[int] = set()
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"cache entries must be tensors; {name!r} is a {type(tensor).__name__}")
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensor = tensor.contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if tensor.numel() and storage in seen_storages:
            tensor = tensor.clone()
        elif tensor.numel():
            seen_storages.add(storage)
        prepared[str(name)] = tensor
    return prepared


def write_cache(
    state_dict: dict[str, torch.Tensor],
    path: Path,
    metadata: dict[str, str] | None = None,
    *,
    source_sha256: str | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``state_dict`` to ``path`` atomically; ``dtype=torch.float16`` halves the file size
    (floating-point tensors only; the caller upcasts after reading if it needs float32)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = _prepare(state_dict, dtype)
    sampled, full = _checksums(_memory_entries(tensors))
    ours = {
        "format": CACHE_FORMAT,
        "source_sha256": source_sha256 or (metadata or {}).get("source_sha256", ""),
        "dtype": dtype_label(dtype),
        "tensor_count": str(len(tensors)),
        "checksum": sampled,
        "data_crc32": full or "00000000",
    }
    header_metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    header_metadata.update({_KEY + k: v for k, v in ours.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, temp, metadata=header_metadata)
        with open(temp, "r+b") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def _read_header(handle, file_size: int) -> tuple[int, dict]:
    prefix = handle.read(8)
    if len(prefix) != 8:
        raise ValueError("shorter than a safetensors header")
    (length,) = struct.unpack("<Q", prefix)
    if length > min(_MAX_HEADER_BYTES, file_size - 8):
        raise ValueError(f"header length {length} does not fit a {file_size}-byte file")
    header = json.loads(handle.read(length).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return length, header


def cache_metadata(path: Path) -> dict[str, str] | None:
    """Our metadata (without the ``napari_odise.`` prefix) of a cache file, None if unreadable."""
    try:
        with open(path, "rb") as handle:
            _, header = _read_header(handle, Path(path).stat().st_size)
    except (OSError, ValueError):
        return None
    metadata = header.get("__metadata__") or {}
    return {k[len(_KEY) :]: v for k, v in metadata.items() if k.startswith(_KEY)}


def cache_problem(path: Path, source_sha256: str | None = None, deep: bool = False) -> str | None:
    """Why ``path`` is not a usable cache file, or None when it checks out."""
    path = Path(path)
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as handle:
            length, header = _read_header(handle, file_size)
            metadata = header.pop("__metadata__", None) or {}
            ours = {k[len(_KEY) :]: v for k, v in metadata.items() if k.startswith(_KEY)}
            if ours.get("format") != CACHE_FORMAT:
                return f"cache format {ours.get('format')!r} is not {CACHE_FORMAT!r}"
            if source_sha256 and ours.get("source_sha256") != source_sha256:
                return "built from a different source file"
            if ours.get("tensor_count") != str(len(header)):
                return f"{len(header)} tensors in the header, metadata says {ours.get('tensor_count')}"
            data_start = 8 + length
            spans = {}
            for name, info in header.items():
                begin, end = (int(x) for x in info["data_offsets"])
                if not 0 <= begin <= end:
                    return f"bad offsets for {name}"
                spans[name] = (tuple(info["shape"]), begin, end)
            data_end = max((end for _, _, end in spans.values()), default=0)
            if data_start + data_end != file_size:
                return f"data should end at byte {data_start + data_end}, the file has {file_size} (truncated?)"

            def entries():
                for name in sorted(spans):
                    shape, begin, end = spans[name]

                    def read(a, b, begin=begin):
                        handle.seek(data_start + begin + a)
                        return handle.read(b - a)

                    whole = (lambda read=read, n=end - begin: read(0, n)) if deep else None
                    yield name, shape, end - begin, read, whole

            sampled, full = _checksums(entries())
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable header ({type(error).__name__}: {error})"
    if sampled != ours.get("checksum"):
        return "checksum mismatch (damaged file)"
    if deep and (full or "00000000") != ours.get("data_crc32"):
        return "data checksum mismatch (damaged tensor bytes)"
    return None


def read_cache(
    path: Path,
    device: str | torch.device = "cpu",
    source_sha256: str | None = None,
    deep: bool = False,
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor] | None:
    """The cached tensors (memory-mapped on CPU), or None on a miss. A damaged file is deleted.

    With ``dtype``, floating-point tensors come back in that dtype, read and converted one at a
    time (on CPU): a bfloat16 model read from a float32 cache never holds the float32 copy."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        return None
    problem = cache_problem(path, source_sha256=source_sha256, deep=deep)
    if problem is None:
        try:
            if dtype is not None:
                return _read_converted(path, dtype)
            return load_file(str(path), device=str(device))
        except Exception as error:  # header passed our checks but safetensors still disagrees
            problem = f"safetensors could not load it ({error})"
    log.warning("napari-odise: discarding cache file %s: %s; it will be rebuilt", path, problem)
    try:
        path.unlink(missing_ok=True)
    except OSError as error:  # e.g. still mapped by another process on Windows: rebuilding overwrites it
        log.warning("napari-odise: could not delete %s: %s", path, error)
    return None


def _read_converted(path: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, floating-point ones in ``dtype``, read one at a time
    with plain reads (a memory map would keep every page it touched resident until closed)."""
    import torch

    from .safe_load import _SAFETENSORS_DTYPES

    tensors = {}
    with open(path, "rb") as handle:
        length, header = _read_header(handle, Path(path).stat().st_size)
        header.pop("__metadata__", None)
        for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            begin, end = (int(x) for x in info["data_offsets"])
            stored = _SAFETENSORS_DTYPES[info["dtype"]]
            buffer = bytearray(end - begin)
            handle.seek(8 + length + begin)
            if handle.readinto(buffer) != len(buffer):
                raise ValueError(f"{name}: the file ends inside the tensor")
            tensor = torch.frombuffer(buffer, dtype=stored) if buffer else torch.empty(0, dtype=stored)
            tensor = tensor.reshape(info["shape"])
            if tensor.is_floating_point() and stored != dtype:
                tensor = tensor.to(dtype)  # a new tensor: the stored bytes are freed with ``buffer``
            tensors[name] = tensor
    return tensors


def cache_files() -> list[Path]:
    folder = cache_dir()
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []


def clear_cache() -> list[Path]:
    """Delete every cache file (and leftovers of interrupted writes); return what was removed."""
    folder = cache_dir()
    removed = []
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and (path.suffix == ".safetensors" or path.name.endswith(".tmp")):
                path.unlink()
                removed.append(path)
    text_folder = folder / "text-embeddings"  # weights.text_store: CLIP text embeddings by string
    if text_folder.is_dir():
        for path in sorted(text_folder.iterdir()):
            path.unlink()
            removed.append(path)
    return removed
