"""The few zarr calls the store needs, written once for zarr 2.18 and zarr 3.

Stores are always written in zarr format 2, which both library versions read and write, so a
store made with one install opens with any install the package allows.
"""

from __future__ import annotations

import os

import numpy as np
import zarr

ZARR_MAJOR = int(zarr.__version__.split(".")[0])
_FORMAT = {"zarr_format": 2} if ZARR_MAJOR >= 3 else {}


def create_group(path: str | os.PathLike, attrs: dict | None = None):
    """A new, empty group at ``path`` (overwriting whatever zarr data is there)."""
    group = zarr.open_group(str(path), mode="w", **_FORMAT)
    if attrs:
        update_attrs(group, attrs)
    return group


def update_attrs(group, attrs: dict) -> None:
    """One write of the attributes file (zarr 3's ``attrs.update`` writes once per key)."""
    if hasattr(group, "update_attributes"):
        group.update_attributes(attrs)
    else:
        group.attrs.update(attrs)


def open_group(path: str | os.PathLike, mode: str = "r"):
    return zarr.open_group(str(path), mode=mode)


def write_array(group, name: str, data: np.ndarray, chunks: tuple[int, ...] | None = None):
    data = np.ascontiguousarray(data)
    chunks = chunks or tuple(max(1, s) for s in data.shape)
    if ZARR_MAJOR >= 3:
        return group.create_array(name, data=data, chunks=chunks)
    return group.create_dataset(name, data=data, chunks=chunks)


def read_array(group, name: str) -> np.ndarray:
    return np.asarray(group[name][...])


def read_attrs(group) -> dict:
    return dict(group.attrs)
