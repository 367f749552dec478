"""Tensors of a TorchScript archive (OpenAI's ``ViT-L-14-336px.pt``) without running anything.

open_clip reads OpenAI's file with ``torch.jit.load(path).state_dict()``. ``torch.jit.load`` does not
unpickle Python objects, but it compiles and runs the TorchScript code stored in the archive (class
definitions, ``__setstate__`` methods), parses it with C++ deserialisers that are a large attack
surface, and builds the whole model; ``torch.load(weights_only=True)`` refuses TorchScript archives
outright. A TorchScript archive is, however, an ordinary PyTorch zip: ``data.pkl`` holds the module
tree (TorchScript objects named ``__torch__.*``, each with a dict of attributes) and tensors point
at raw records under ``data/``. This module reads exactly that with a restricted unpickler:

* ``__torch__.*`` objects become :class:`ScriptObject` records of their attributes; nothing is
  imported and the archive's ``code/`` is never compiled or executed;
* tensors are rebuilt by our own function from the raw records, memory-mapped;
* any other global (``os.system``, ``builtins.eval``, ...) raises :class:`UnsafeCheckpointError`.

Which attributes are parameters and buffers (the ``state_dict``) is read from the
``__parameters__ = [...]`` / ``__buffers__ = [...]`` lines of the archive's ``code/`` files, parsed as
text with ``ast.literal_eval``; plain tensor attributes that ``state_dict()`` skips are skipped too.
"""

from __future__ import annotations

import ast
import io
import pickle
import re
import struct
import types
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import CorruptCheckpointError, UnsafeCheckpointError

_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}
_CLASS_LINE = re.compile(r"^class\s+(\w+)\s*\(\s*([\w.]*)\s*\)\s*:")
_LIST_LINE = re.compile(r"^\s+(__parameters__|__buffers__)\s*=\s*(\[.*\])\s*$")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header, 30 bytes


def is_torchscript_archive(path: Path) -> bool:
    """PyTorch's own test: a zip whose records include ``constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


class ScriptObject:
    """An inert record of one pickled TorchScript object: its type name and its attributes."""

    type_name = ""

    def __init__(self, *args):
        self.__dict__["attributes"] = {}

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise CorruptCheckpointError(
                f"TorchScript object {self.type_name} has custom state ({type(state).__name__}); "
                "only plain modules are supported"
            )
        self.__dict__["attributes"] = state


@dataclass
class _StorageRef:
    dtype: torch.dtype
    storage: torch.UntypedStorage


@dataclass
class _ClassInfo:
    is_module: bool
    parameters: list[str] = field(default_factory=list)
    buffers: list[str] = field(default_factory=list)


def _rebuild_tensor(ref, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Our replacement for ``torch._utils._rebuild_tensor_v2``; ``set_`` checks the bounds."""
    if not isinstance(ref, _StorageRef):
        raise CorruptCheckpointError("a tensor in data.pkl does not point at a storage record")
    size, stride, storage_offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(storage_offset)
    if len(size) != len(stride) or min((storage_offset, *size, *stride)) < 0:
        raise CorruptCheckpointError(f"a tensor has an invalid layout: size {size}, stride {stride}")
    if all(size):  # never let set_ grow a storage: the last element must lie inside the record
        last = storage_offset + sum((n - 1) * step for n, step in zip(size, stride, strict=True))
        element_size = torch.empty(0, dtype=ref.dtype).element_size()
        if (last + 1) * element_size > ref.storage.nbytes():
            raise CorruptCheckpointError(f"a tensor of size {size} does not fit its {ref.storage.nbytes()}-byte record")
    tensor = torch.empty(0, dtype=ref.dtype)
    try:
        tensor.set_(ref.storage, storage_offset, size, stride)
    except RuntimeError as error:
        raise CorruptCheckpointError(f"a tensor does not fit its storage record: {error}") from None
    return tensor


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _first_argument(value, *rest):
    """``torch.jit._pickle.build_*list`` / ``restore_type_tag``: the value itself is what we need."""
    return value


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    **{
        ("torch.jit._pickle", name): _first_argument
        for name in ("build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "restore_type_tag")
    },
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


def _fresh(allowed):
    """A private copy of an allowed global, so a crafted BUILD opcode that sets attributes on it
    (e.g. a function's ``__defaults__``) cannot change how later files are read."""
    if isinstance(allowed, types.FunctionType):
        return types.FunctionType(allowed.__code__, allowed.__globals__, allowed.__name__, allowed.__defaults__)
    if isinstance(allowed, _StorageType):
        return _StorageType(allowed.dtype)
    return allowed  # OrderedDict: a built-in type, whose attributes cannot be set


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals above and ``__torch__.*`` names; everything else is refused."""

    def __init__(self, data: bytes, load_storage, source: Path):
        super().__init__(io.BytesIO(data))
        self._load_storage = load_storage
        self._source = source
        self._script_classes: dict[str, type] = {}

    def find_class(self, module, name):
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return _fresh(allowed)
        if module == "__torch__" or module.startswith("__torch__."):
            full_name = f"{module}.{name}"
            if full_name not in self._script_classes:
                self._script_classes[full_name] = type("ScriptObject", (ScriptObject,), {"type_name": full_name})
            return self._script_classes[full_name]
        shown = "builtins" if module == "__builtin__" else module  # protocol-2 pickles say __builtin__
        raise UnsafeCheckpointError(
            f"{self._source} is not a plain weights file: this TorchScript archive's data.pkl refers to "
            f"{shown}.{name}. Unpickling it would import or call Python code from the file, so napari-odise "
            "refused it; nothing from the file was executed."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CorruptCheckpointError(f"{self._source}: unexpected persistent id {pid!r:.80} in data.pkl")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise CorruptCheckpointError(f"{self._source}: unknown storage type in data.pkl")
        nbytes = int(numel) * torch.empty(0, dtype=storage_type.dtype).element_size()
        return _StorageRef(storage_type.dtype, self._load_storage(str(key), nbytes))


class _Records:
    """The archive's tensor records as slices of one private (copy-on-write) memory map."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, prefix: str):
        self.path, self.archive, self.prefix = path, archive, prefix
        self.file_size = path.stat().st_size
        self._mapped = None

    def storage(self, key: str, nbytes: int) -> torch.UntypedStorage:
        try:
            info = self.archive.getinfo(f"{self.prefix}data/{key}")
        except KeyError:
            raise CorruptCheckpointError(f"{self.path}: tensor record data/{key} is missing") from None
        if info.file_size < nbytes:
            raise CorruptCheckpointError(f"{self.path}: tensor record data/{key} is shorter than its tensor")
        if info.compress_type != zipfile.ZIP_STORED:  # not written by torch; read it into memory
            raw = bytearray(self.archive.read(info))[:nbytes]
            return torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else torch.UntypedStorage(0)
        start = self._data_offset(info)
        if start + nbytes > self.file_size:
            raise CorruptCheckpointError(f"{self.path} is truncated (tensor record data/{key})")
        if self._mapped is None:
            self._mapped = torch.UntypedStorage.from_file(str(self.path), False, self.file_size)
        return self._mapped[start : start + nbytes]

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        with open(self.path, "rb") as handle:
            handle.seek(info.header_offset)
            header = handle.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise CorruptCheckpointError(f"{self.path}: damaged zip entry {info.filename}")
        fields = _LOCAL_HEADER.unpack(header)
        name_length, extra_length = fields[-2], fields[-1]
        return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length


def _class_infos(archive: zipfile.ZipFile, prefix: str) -> dict[str, _ClassInfo]:
    """``__torch__.<module>.<Class>`` -> parameter/buffer names, read from the code files as text."""
    infos: dict[str, _ClassInfo] = {}
    code_root = f"{prefix}code/"
    for name in archive.namelist():
        if not (name.startswith(code_root) and name.endswith(".py")):
            continue
        module = name[len(code_root) : -len(".py")].replace("/", ".")
        current: _ClassInfo | None = None
        for line in archive.read(name).decode("utf-8", errors="replace").splitlines():
            class_match = _CLASS_LINE.match(line)
            if class_match:
                current = _ClassInfo(is_module=class_match.group(2) == "Module")
                infos[f"{module}.{class_match.group(1)}"] = current
                continue
            if line and not line[0].isspace():
                current = None
                continue
            list_match = _LIST_LINE.match(line) if current is not None else None
            if list_match:
                try:
                    names = ast.literal_eval(list_match.group(2))
                except (ValueError, SyntaxError):
                    continue
                if isinstance(names, list) and all(isinstance(n, str) for n in names):
                    target = current.parameters if list_match.group(1) == "__parameters__" else current.buffers
                    target.extend(names)
    return infos


def _collect(obj: ScriptObject, infos: dict[str, _ClassInfo], prefix: str, out: dict, seen: set) -> None:
    """Mirror ``ScriptModule.state_dict()``: parameters, buffers, then submodules, recursively."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    attributes = getattr(obj, "attributes", {})
    info = infos.get(obj.type_name)
    if info is not None:
        tensor_names = info.parameters + info.buffers
    else:  # no type information: every tensor attribute
        tensor_names = [name for name, value in attributes.items() if isinstance(value, torch.Tensor)]
    for name in tensor_names:
        value = attributes.get(name)
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
    for name, value in attributes.items():
        if isinstance(value, ScriptObject):
            child = infos.get(value.type_name)
            if child is None or child.is_module:
                _collect(value, infos, f"{prefix}{name}.", out, seen)


def load_torchscript_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """What ``torch.jit.load(path).state_dict()`` returns, read without executing the archive."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise CorruptCheckpointError(f"{path} is not a readable zip archive: {error}") from None
    with archive:
        data_pkl = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if not data_pkl:
            raise CorruptCheckpointError(
                f"{path} is a TorchScript archive without data.pkl (saved by a very old PyTorch); "
                "re-export it with a current PyTorch"
            )
        prefix = data_pkl[0][: -len("data.pkl")]
        records = _Records(path, archive, prefix)
        unpickler = _RestrictedUnpickler(archive.read(data_pkl[0]), records.storage, path)
        try:
            root = unpickler.load()
        except (UnsafeCheckpointError, CorruptCheckpointError):
            raise
        except Exception as error:  # malformed pickle stream, wrong argument types, ...
            reason = f"{type(error).__name__}: {error}"
            raise CorruptCheckpointError(f"{path}: data.pkl could not be read ({reason})") from None
        if not isinstance(root, ScriptObject):
            raise CorruptCheckpointError(f"{path}: data.pkl does not hold a TorchScript module")
        state: dict[str, torch.Tensor] = OrderedDict()
        _collect(root, _class_infos(archive, prefix), "", state, set())
    return state
