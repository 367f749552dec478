"""The COCO panoptic PNG: a segment id per pixel, spread over the RGB bytes.

id = R + 256 * G + 256**2 * B, and id 0 is "void" (no segment), which is exactly our label
map's 0 = unlabeled. Segment ids are per image, so label map ids are written unchanged; three
bytes hold ids below 2**24 and larger ones are refused rather than wrapped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_odise.io.errors import DatasetError
from napari_odise.io.images import write_png
from napari_odise.pixel_budget import open_with_pillow

MAX_SEGMENT_ID = 256**3 - 1


def ids_to_rgb(label_map: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) encoding of a map of segment ids."""
    ids = np.asarray(label_map)
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"segment ids must be integers, not {ids.dtype}")
    if ids.size and ids.min() < 0:
        raise ValueError(f"segment ids must be >= 0, found {int(ids.min())}")
    if ids.size and ids.max() > MAX_SEGMENT_ID:
        too_large = np.unique(ids[ids > MAX_SEGMENT_ID])
        raise DatasetError(
            f"segment ids {too_large[:10].tolist()} do not fit a COCO panoptic PNG (at most "
            f"{MAX_SEGMENT_ID} = 2**24 - 1): renumber the segments first"
        )
    # Little-endian bytes of the id are exactly (R, G, B, 0).
    packed = np.ascontiguousarray(ids, dtype="<u4")
    return packed.view(np.uint8).reshape(*ids.shape, 4)[..., :3].copy()


def rgb_to_ids(rgb: np.ndarray) -> np.ndarray:
    """int32 map of segment ids from an (H, W, 3) or (H, W, 4) uint8 panoptic image."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.dtype != np.uint8:
        raise DatasetError(
            f"a panoptic PNG holds uint8 RGB pixels, got {rgb.dtype} of shape {rgb.shape}"
        )
    rgb = rgb[..., :3].astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def write_panoptic_png(path: str | os.PathLike, label_map: np.ndarray) -> Path:
    return write_png(path, ids_to_rgb(label_map))


def read_panoptic_png(path: str | os.PathLike) -> np.ndarray:
    """int32 segment ids of a panoptic PNG. Palette images are expanded to their RGB colours;
    8/16-bit gray images, which some tools write for few segments, are read as ids directly."""
    with open_with_pillow(path) as image:  # the header's size checked before decoding
        if image.mode in ("P", "PA"):
            image = image.convert("RGB")
        pixels = np.asarray(image)
    if pixels.ndim == 2:
        return pixels.astype(np.int32)
    return rgb_to_ids(pixels)
