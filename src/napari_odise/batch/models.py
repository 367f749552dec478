"""Which model a batch runs, as a small picklable value, and loading it once per process.

A dask worker gets a :class:`ModelSpec`, not a model: each worker process loads the predictor
the first time it needs it and keeps it for every later image (the cache below is per process).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from napari_odise.batch.store import CLASSIFY_SETTINGS, ENCODE_SETTINGS

_CACHE: dict = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    name: str = "official"  # "official", "official-caption", "tiny", ... or a checkpoint path
    device: str = "auto"
    precision: str = "fp32"
    preset: str | None = None  # named settings: "evaluation" or "demo"
    settings: tuple[tuple[str, object], ...] = ()  # single inference options, applied after

    @classmethod
    def create(cls, name="official", device="auto", precision="fp32", preset=None, **settings) -> ModelSpec:
        return cls(str(name), str(device), precision, preset, tuple(sorted(settings.items())))

    @classmethod
    def of(cls, predictor) -> ModelSpec:
        """The spec that rebuilds a loaded predictor elsewhere (same weights, same settings)."""
        current = predictor.settings
        names = (*ENCODE_SETTINGS, *CLASSIFY_SETTINGS, "crop_batch_size")
        return cls.create(predictor.name, predictor.device.type, predictor.precision, **{n: current[n] for n in names})

    def resolved_settings(self) -> dict:
        """All inference settings this spec gives, without loading any weights."""
        from napari_odise.model.config import ODISEConfig, get_config
        from napari_odise.predictor import DEMO_SETTINGS

        try:
            config = get_config(self.name)
        except ValueError:
            from napari_odise.checkpoints.loading import finetuned_config_path

            config_file = finetuned_config_path(Path(self.name))
            if not config_file.is_file():
                raise ValueError(
                    f"unknown model {self.name!r}: use official, official-caption, tiny, tiny-caption "
                    "or a checkpoint saved by napari-odise (with its .config.json next to it)"
                ) from None
            config = ODISEConfig.from_dict(json.loads(config_file.read_text())["config"])
        values = dict(vars(config.inference))
        if self.preset == "demo":
            values.update(DEMO_SETTINGS)
        values.update(dict(self.settings))
        return values

    def load(self):
        from napari_odise.predictor import Predictor

        predictor = Predictor.from_pretrained(self.name, device=self.device, precision=self.precision)
        if self.preset or self.settings:
            predictor.configure(self.preset, **dict(self.settings))
        return predictor


def load_predictor(spec: ModelSpec, device: str | None = None):
    """The predictor for ``spec`` in this process, loaded on first use (thread-safe)."""
    if device is not None and device != spec.device:
        spec = ModelSpec(spec.name, device, spec.precision, spec.preset, spec.settings)
    with _LOCK:
        if spec not in _CACHE:
            _CACHE[spec] = spec.load()
        return _CACHE[spec]


def worker_device(device: str) -> str:
    """The device for this dask worker: with "auto" and several GPUs, worker i of a local cluster
    (named 0, 1, ...) takes GPU i; workers started by a cluster manager get their GPU through
    CUDA_VISIBLE_DEVICES and use "cuda" as it is."""
    import torch

    if device != "auto" or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    if isinstance(name, int):
        return f"cuda:{name % torch.cuda.device_count()}"
    return device
