"""Test-time input handling as the official evaluation does it.

detectron2's ``ResizeShortestEdge(1024, max_size=2560)`` resizes the uint8 RGB image with PIL's
bilinear filter; the model then scales pixels to [0, 1] and zero-pads bottom/right to a multiple
of 64.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F


def shortest_edge_size(height: int, width: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge.get_output_shape."""
    scale = short_edge / min(height, width)
    if height < width:
        new_h, new_w = short_edge, scale * width
    else:
        new_h, new_w = scale * height, short_edge
    if max(new_h, new_w) > max_size:
        rescale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * rescale, new_w * rescale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_image(image: np.ndarray, short_edge: int, max_size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> resized uint8 (h, w, 3) with PIL bilinear (detectron2's ResizeTransform)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    new_h, new_w = shortest_edge_size(h, w, short_edge, max_size)
    if (new_h, new_w) == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))


def to_model_input(image: np.ndarray, size_divisibility: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(padded (1, 3, Hp, Wp), unpadded (1, 3, H, W)) float tensors in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255.0)[None]
    if device is not None:
        x = x.to(device)
    h, w = x.shape[-2:]
    ph = -(-h // size_divisibility) * size_divisibility
    pw = -(-w // size_divisibility) * size_divisibility
    return F.pad(x, (0, pw - w, 0, ph - h)), x
