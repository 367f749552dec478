"""Synthetic panoptic scenes: shapes of a few categories on textured backgrounds.

Stuff: "sky" (upper band, blue noise) and "grass" (lower band, green noise). Things: "disc" (red)
and "box" (yellow), 1-3 per image at random places and sizes. Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

from napari_odise.result import PanopticResult
from napari_odise.vocabulary import Category, Vocabulary

VOCABULARY = Vocabulary(
    [
        Category(1, "sky", ("sky",), isthing=False, color=(70, 130, 180)),
        Category(2, "grass", ("grass",), isthing=False, color=(80, 160, 60)),
        Category(3, "disc", ("disc", "circle"), isthing=True, color=(220, 20, 60)),
        Category(4, "box", ("box", "square"), isthing=True, color=(250, 200, 30)),
    ],
    name="synthetic",
)


def scene(seed: int, size: int = 128) -> tuple[np.ndarray, PanopticResult]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    horizon = int(size * rng.uniform(0.35, 0.6))
    image = np.zeros((size, size, 3), np.float64)
    noise = rng.normal(0, 18, (size, size, 3))
    image[:horizon] = (90, 140, 230)
    image[horizon:] = (60, 150, 50)
    image += noise
    label_map = np.where(yy < horizon, 1, 2).astype(np.int32)
    categories = {1: 1, 2: 2}
    next_id = 3
    for _ in range(rng.integers(1, 4)):
        kind = int(rng.integers(3, 5))
        r = rng.uniform(0.08, 0.18) * size
        cy, cx = rng.uniform(r, size - r, 2)
        if kind == 3:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            color = (210, 40, 40)
        else:
            mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
            color = (240, 210, 40)
        image[mask] = np.asarray(color) + noise[mask] * 0.5
        label_map[mask] = next_id
        categories[next_id] = kind
        next_id += 1
    present = [i for i in categories if (label_map == i).any()]
    info = [{"id": i, "category_id": categories[i], "isthing": categories[i] >= 3} for i in present]
    result = PanopticResult.from_segments_info(label_map, info, VOCABULARY)
    return np.clip(image, 0, 255).astype(np.uint8), result


def write_dataset(folder, count: int, size: int = 128, first_seed: int = 0) -> None:
    from napari_odise.io import export_results

    pairs = [scene(first_seed + i, size) for i in range(count)]
    export_results(
        [r for _, r in pairs], folder, [img for img, _ in pairs], [f"scene{first_seed + i:03d}" for i in range(count)],
        instances=False, semantic=False,
    )
