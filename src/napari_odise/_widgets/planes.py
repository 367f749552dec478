"""Where the 2-D planes of an image layer are, so stacks segment plane by plane.

ODISE sees one 2-D picture at a time. An image layer of shape (..., H, W) or RGB (..., H, W, C)
is a stack of planes indexed by its leading axes; its Labels layer has shape (..., H, W) and plane
``key`` (a tuple of leading indices, ``()`` for a plain 2-D image) of one is plane ``key`` of the
other.
"""

from __future__ import annotations

import numpy as np

from napari_odise.io.planes import PlaneKey, all_planes, plane_axes

__all__ = ["PlaneKey", "all_planes", "current_plane", "describe", "image_plane", "labels_shape", "plane_axes"]


def labels_shape(image_layer) -> tuple[int, ...]:
    """Shape of the Labels layer that matches an image layer (the colour axis dropped)."""
    shape = tuple(image_layer.data.shape)
    return shape[:-1] if image_layer.rgb else shape


def current_plane(layer, dims_point) -> PlaneKey:
    """The plane of ``layer`` the viewer shows at world position ``dims_point``."""
    leading = plane_axes(tuple(layer.data.shape[:-1] if getattr(layer, "rgb", False) else layer.data.shape))
    if leading == 0:
        return ()
    coords = layer.world_to_data(np.asarray(dims_point, dtype=float))[:leading]
    shape = layer.data.shape[:leading]
    return tuple(int(np.clip(round(float(c)), 0, n - 1)) for c, n in zip(coords, shape))


def image_plane(image_layer, key: PlaneKey) -> np.ndarray:
    """The pixels of one plane as numpy (dask/zarr-backed layers load just that plane)."""
    return np.asarray(image_layer.data[key] if key else image_layer.data)


def describe(key: PlaneKey) -> str:
    return "plane " + ", ".join(str(i) for i in key) if key else "image"
