"""Shared fixtures. napari's own pytest plugin provides ``make_napari_viewer``."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own napari-odise home, so no test sees a user's weights or cache."""
    home = tmp_path_factory.mktemp("odise_home")
    monkeypatch.setenv("NAPARI_ODISE_HOME", str(home))
    return home
