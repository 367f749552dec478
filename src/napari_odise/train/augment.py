"""ODISE's training augmentation (detectron2's large-scale jitter), at a configurable size.

Random horizontal flip, resize by a random scale of ``size`` (0.1-2.0 by default; the image's
longer side fits ``scale * size``), then a random ``size`` x ``size`` crop, padding where the image
is smaller (image with 128, labels with 0 = unlabeled). Labels are resized with nearest neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class JitterConfig:
    size: int = 1024
    min_scale: float = 0.1
    max_scale: float = 2.0
    flip: bool = True
    pad_value: int = 128


def large_scale_jitter(
    image: np.ndarray, label_map: np.ndarray, config: JitterConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (size, size, 3), label map int32 (size, size)) for one training sample."""
    if rng.random() < 0.5 and config.flip:
        image, label_map = image[:, ::-1], label_map[:, ::-1]
    h, w = label_map.shape
    scale = rng.uniform(config.min_scale, config.max_scale)
    factor = min(scale * config.size / h, scale * config.size / w)
    new_h, new_w = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
    image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((new_w, new_h), Image.BILINEAR))
    label_map = np.asarray(
        Image.fromarray(np.ascontiguousarray(label_map.astype(np.int32))).resize((new_w, new_h), Image.NEAREST)
    )
    top = int(rng.integers(0, max(new_h - config.size, 0) + 1))
    left = int(rng.integers(0, max(new_w - config.size, 0) + 1))
    image = image[top : top + config.size, left : left + config.size]
    label_map = label_map[top : top + config.size, left : left + config.size]
    out_image = np.full((config.size, config.size, 3), config.pad_value, np.uint8)
    out_labels = np.zeros((config.size, config.size), np.int32)
    out_image[: image.shape[0], : image.shape[1]] = image
    out_labels[: label_map.shape[0], : label_map.shape[1]] = label_map
    return out_image, out_labels
