"""The batch runner's model: a :class:`~napari_odise.models.ModelSpec` (picklable, what a dask
worker receives) and the process's model pool, so each worker process loads it once and a run
inside napari shares the widgets' loaded model instead of loading a second copy.
"""

from __future__ import annotations

from napari_odise.models import ModelSpec
from napari_odise.pool import default_pool

__all__ = ["ModelSpec", "describe_model", "load_predictor", "worker_device"]


def describe_model(spec: ModelSpec) -> str:
    """``tiny on cpu``, ``official on auto (fp16)``: what a busy line names."""
    precision = f" ({spec.precision})" if spec.precision != "fp32" else ""
    return f"{spec.name} on {spec.device}{precision}"


def load_predictor(spec: ModelSpec, device: str | None = None):
    """The predictor for ``spec`` in this process (the shared pool's; loaded on first use)."""
    if device is not None and device != spec.device:
        spec = spec.on(device)
    return default_pool().get(spec)


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
