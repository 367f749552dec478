"""The 2-D planes of an N-D label array, and what a plane is called in a dataset.

ODISE segments one 2-D picture at a time, and a dataset image is one 2-D picture, so a label
array of shape (..., H, W) is a stack of planes indexed by its leading axes. A plane's key is the
tuple of its leading indices, ``()`` for a plain 2-D array.
"""

from __future__ import annotations

import itertools

PlaneKey = tuple[int, ...]


def plane_axes(shape: tuple[int, ...]) -> int:
    """How many leading axes index planes (0 for a 2-D map)."""
    return len(shape) - 2


def all_planes(shape: tuple[int, ...]) -> list[PlaneKey]:
    return [tuple(k) for k in itertools.product(*(range(n) for n in shape[: plane_axes(shape)]))]


def plane_name(name: str, key: PlaneKey) -> str:
    """A plane's image name in a dataset: ``name`` for a 2-D map, ``name-<i>[-<j>...]`` in a stack."""
    return name if not key else f"{name}-{'-'.join(str(i) for i in key)}"
