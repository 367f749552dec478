"""The few non-tensor objects that official checkpoints legitimately contain, made inert.

``torch.load(weights_only=True)`` accepts tensors, plain containers and numbers only. Two kinds of
harmless extras appear in real checkpoints and would make it refuse them:

* Stable Diffusion v1.x ``.ckpt`` files are PyTorch Lightning training checkpoints: their
  ``callbacks`` entry pickles a ``pytorch_lightning...ModelCheckpoint`` whose state holds numpy
  scalars. The class is replaced by :class:`InertObject`, which only stores the pickled state:
  no Lightning code is imported or run.
* numpy arrays, scalars and dtypes (detectron2-style checkpoints may hold them): numpy rebuilds
  them from raw bytes without calling user code.

Anything else outside torch's own allowlist is still refused.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache


class InertObject:
    """Stands in for a class we refuse to import; keeps the pickled state for inspection only."""

    def __setstate__(self, state):
        self.__dict__["pickled_state"] = state

    def __repr__(self) -> str:
        return f"<inert stand-in for {type(self).pickled_name}>"


def _inert(full_name: str) -> tuple[type, str]:
    module, _, name = full_name.rpartition(".")
    stand_in = type(name, (InertObject,), {"__module__": module, "pickled_name": full_name})
    return stand_in, full_name


TRAINING_BOOKKEEPING = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
)


def _numpy_globals() -> list[tuple[object, str]]:
    try:
        import numpy as np
    except ImportError:
        return []
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    entries: list[tuple[object, str]] = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for package in ("numpy.core", "numpy._core"):  # files name whichever numpy wrote them
        entries.append((multiarray._reconstruct, f"{package}.multiarray._reconstruct"))
        entries.append((multiarray.scalar, f"{package}.multiarray.scalar"))
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in dir(dtypes):
            if name.endswith("DType"):
                entries.append((getattr(dtypes, name), f"numpy.dtypes.{name}"))
    return entries


@lru_cache(maxsize=1)
def extra_safe_globals() -> tuple[tuple[object, str], ...]:
    return tuple([_inert(name) for name in TRAINING_BOOKKEEPING] + _numpy_globals())


@contextmanager
def allow_harmless_extras():
    """Within this block, ``torch.load(weights_only=True)`` also accepts the objects above."""
    import torch.serialization as serialization

    safe_globals = getattr(serialization, "safe_globals", None)
    if safe_globals is None:  # torch < 2.5: the plain weights-only allowlist
        yield
        return
    with safe_globals(list(extra_safe_globals())):
        yield
