"""Sample results for the io tests: small literal maps and random ones with many segments.

Shared by the ``test_io_*`` modules (imported as a plain module); it holds no tests itself.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from napari_odise.result import PanopticResult, category_fields, segments_table
from napari_odise.vocabulary import Category, Vocabulary

# 6 x 8, every kind of segment: two persons (things), a car, road (stuff), unlabeled pixels.
LITERAL_MAP = np.array(
    [
        [1, 1, 0, 0, 4, 4, 4, 4],
        [1, 1, 0, 2, 2, 4, 4, 4],
        [1, 1, 0, 2, 2, 0, 4, 4],
        [7, 7, 7, 7, 7, 7, 7, 7],
        [7, 7, 7, 7, 7, 7, 7, 7],
        [7, 7, 0, 0, 0, 0, 7, 2],
    ],
    dtype=np.int32,
)
# id -> (category id, score, source); segment 2 is in two parts on purpose.
LITERAL_SEGMENTS = {
    1: (1, 0.91, "model"),
    2: (1, 0.55, "edited"),
    4: (3, np.nan, "edited"),
    7: (149, 0.75, "model"),
}


def small_vocabulary() -> Vocabulary:
    return Vocabulary(
        [
            Category(1, "person", ("person", "people"), True, (220, 20, 60)),
            Category(3, "car", ("car",), True, (0, 0, 142)),
            Category(149, "road", ("road", "street"), False, (128, 64, 128)),
        ],
        name="street",
    )


def make_result(label_map, segments: dict, vocabulary: Vocabulary, info=None) -> PanopticResult:
    label_map = np.asarray(label_map, dtype=np.int32)
    areas = np.bincount(label_map.ravel())
    rows = []
    for segment_id, (category_id, score, source) in sorted(segments.items()):
        category = None if category_id == -1 else vocabulary.by_id(category_id)
        rows.append((segment_id, *category_fields(category), score, int(areas[segment_id]),
                     source))
    result = PanopticResult(label_map, segments_table(*zip(*rows)), vocabulary,
                            info=dict(info or {}))
    result.validate()
    return result


def literal_result(info=None) -> PanopticResult:
    return make_result(LITERAL_MAP, LITERAL_SEGMENTS, small_vocabulary(), info)


def random_result(seed: int, shape=(48, 64), segments: int = 120, vocabulary=None):
    """Blocky random map with many segments (some split in several parts, some ids skipped),
    random categories of ``vocabulary`` (COCO-133 by default), scores and sources."""
    rng = np.random.default_rng(seed)
    vocabulary = vocabulary or Vocabulary.preset("coco")
    blocks = rng.integers(0, segments + 1, size=(shape[0] // 4, shape[1] // 4))
    label_map = np.kron(blocks, np.ones((4, 4), dtype=np.int64)).astype(np.int32)
    label_map[rng.random(shape) < 0.03] = 0  # specks of unlabeled
    label_map = np.where(label_map > 0, label_map * 3 + 5, 0).astype(np.int32)  # gaps in ids
    ids = np.unique(label_map)
    ids = ids[ids > 0]
    categories = rng.choice(vocabulary.ids, size=len(ids))
    scores = rng.random(len(ids))
    scores[rng.random(len(ids)) < 0.2] = np.nan
    sources = rng.choice(["model", "edited"], size=len(ids))
    spec = {int(i): (int(c), float(s), str(src))
            for i, c, s, src in zip(ids, categories, scores, sources)}
    return make_result(label_map, spec, vocabulary)


def random_image(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*shape, 3), dtype=np.uint8)


def save_jpeg(path, shape, seed: int = 0):
    Image.fromarray(random_image(shape, seed)).save(path, format="JPEG")
    return path


# --- an independent reader, written from the COCO panoptic format's definition -------------
def decode_panoptic_png(path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def numpy_bbox(mask: np.ndarray) -> list[int]:
    rows, columns = np.nonzero(mask)
    return [int(columns.min()), int(rows.min()), int(columns.max() - columns.min() + 1),
            int(rows.max() - rows.min() + 1)]


def load_json(path):
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def dataset_files(root) -> dict[str, bytes]:
    """Every file of a dataset by relative path (the lock file aside)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }
