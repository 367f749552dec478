"""Shared fixtures. napari's own pytest plugin provides ``make_napari_viewer``."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Load torch (and with torchvision, triton) before any test creates an OpenGL canvas: triton's
# LLVM loaded after Mesa's LLVM-based llvmpipe (Xvfb) crashes the process. The plugin itself keeps
# triton out of napari sessions (napari_odise._widgets), this only fixes the tests' import order.
import torchvision  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _own_model_pool():
    """Every test starts with an empty model pool (the process's shared loaded models)."""
    from napari_odise.pool import ModelPool, set_default_pool

    previous = set_default_pool(ModelPool())
    yield
    set_default_pool(previous)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own napari-odise home, so no test sees a user's weights or cache."""
    home = tmp_path_factory.mktemp("odise_home")
    monkeypatch.setenv("NAPARI_ODISE_HOME", str(home))
    return home


# Test geometry: 128 crops of a 128-short-edge image (the tiny preset keeps the official 512/1024).
FAST_GEOMETRY = {"short_edge": 128, "max_size": 320, "crop_size": 128}


def fast_tiny(name: str = "tiny", **config_changes):
    """A tiny model (seeded random weights) with the fast test geometry."""
    from dataclasses import fields, replace

    from napari_odise.model.build import build_odise
    from napari_odise.model.config import get_config

    config = get_config(name)
    changes = {**FAST_GEOMETRY, **config_changes}
    settings = {f.name for f in fields(config.inference)}
    inference = config.inference.replace(**{k: v for k, v in changes.items() if k in settings})
    config = replace(config, inference=inference, **{k: v for k, v in changes.items() if k not in settings})
    return build_odise(config)


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny label model with seeded random weights, built once per test session."""
    return fast_tiny("tiny")


@pytest.fixture(scope="session")
def tiny_caption_model():
    return fast_tiny("tiny-caption")


@pytest.fixture(scope="session")
def official_meta_model():
    """The official label model on the meta device: names and shapes, no memory."""
    from napari_odise.model.build import build_odise

    return build_odise("official", device="meta")


def random_image(height: int, width: int, seed: int = 0):
    import numpy as np

    return (np.random.default_rng(seed).random((height, width, 3)) * 255).astype("uint8")
