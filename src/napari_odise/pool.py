"""Loaded models, one copy per spec per process, shared by every widget, the batch runner and the CLI.

The official model is 1.4 B parameters (about 5.6 GB in fp32): two widgets each loading their own
copy do not fit a 12 GB GPU. Everything asks the pool instead; with ``keep_one`` set, loading a
different model first frees the others, so such a GPU can switch models.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

from napari_odise.models import ModelSpec, model_name


class ModelPool:
    def __init__(self, loader: Callable[[ModelSpec], object] | None = None, keep_one: bool = False):
        self._loader = loader or ModelSpec.load
        self.keep_one = keep_one
        self._models: dict[ModelSpec, object] = {}
        self._lock = threading.Lock()  # one load at a time; a second caller waits for the first
        self.builds = 0  # how many models this pool loaded (tests and the UI count them)

    def get(self, spec: ModelSpec, keep_one: bool | None = None):
        """The loaded predictor for ``spec``, loaded on first use (slow: call it from a worker)."""
        key = spec.resolved()
        with self._lock:
            predictor = self._models.get(key)
            if predictor is None:
                if self.keep_one if keep_one is None else keep_one:
                    self._release(lambda other: other != key)
                predictor = self._loader(key)
                self.builds += 1
                self._models[key] = predictor
            return predictor

    def peek(self, spec: ModelSpec):
        """The predictor for ``spec`` if it is loaded, else None (never loads)."""
        with self._lock:
            return self._models.get(spec.resolved())

    def put(self, spec: ModelSpec, predictor) -> None:
        """Offer an already loaded predictor under ``spec`` (scripts and tests that built their own)."""
        with self._lock:
            self._models[spec.resolved()] = predictor

    def loaded(self) -> list[ModelSpec]:
        with self._lock:
            return list(self._models)

    def release(self, name: str | None = None) -> int:
        """Free the models of one name or checkpoint path (all with None); how many were freed.

        Used when a checkpoint file was rewritten (fine-tuning again into the same folder)."""
        with self._lock:


            return self._release(lambda spec: name is None or spec.name == model_name(name))

    def _release(self, which: Callable[[ModelSpec], bool]) -> int:
        gone = [spec for spec in self._models if which(spec)]
        for spec in gone:
            del self._models[spec]
        if gone:
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return len(gone)


_default = ModelPool()


def default_pool() -> ModelPool:
    """This process's pool, shared by the widgets, the batch runner and the CLI."""
    return _default


def set_default_pool(pool: ModelPool) -> ModelPool:
    """Replace this process's pool (tests give each test its own); returns the previous one."""
    global _default
    previous, _default = _default, pool
    return previous
