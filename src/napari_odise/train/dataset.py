"""Training samples from an exported dataset (COCO panoptic + vocabulary, see docs/formats.md).

Each sample is an augmented image and its segments as (category index, binary mask) targets;
category indices follow the dataset vocabulary's order, which is the order of the text embeddings
the class logits are computed against. Segments without a category are left out (unlabeled), and
so are crowd segments (``iscrowd``), as Mask2Former's panoptic mapper does: their pixels become
void, which no target covers and which the validation PQ ignores. Images are scaled to uint8 RGB
by ``to_rgb_uint8`` as inference scales them (16-bit and float images by robust percentiles, the
default of the Predictor and batch runs), so training sees the pixels the model will be asked to
segment. A deterministic split holds out images for validation.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from napari_odise.errors import InvalidInputError, MissingFileError
from napari_odise.image_input import to_rgb_uint8
from napari_odise.io import open_dataset
from napari_odise.io.errors import DatasetError
from napari_odise.io.images import read_image
from napari_odise.result import UNASSIGNED
from napari_odise.vocabulary import Vocabulary

from .augment import JitterConfig, large_scale_jitter


@dataclass
class Sample:
    name: str
    image: np.ndarray  # uint8 (H, W, 3)
    label_map: np.ndarray  # int32 (H, W)
    categories: dict[int, int]  # segment id -> category id


def split_names(names: list[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """A stable train/validation split by hashing names (adding images keeps earlier assignments)."""
    if not 0 <= val_fraction < 1:
        raise InvalidInputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    scored = sorted(names, key=lambda n: (zlib.crc32(f"{seed}:{n}".encode()), n))
    n_val = int(round(len(names) * val_fraction))
    if val_fraction > 0 and len(names) > 1:
        n_val = max(1, n_val)
    val = set(scored[:n_val])
    return [n for n in names if n not in val], [n for n in names if n in val]


def read_training_image(path) -> np.ndarray:
    """uint8 RGB as inference sees the file (stored pixels, no EXIF turn: labels are drawn on them)."""
    pixels = read_image(path)
    if pixels.ndim == 3 and pixels.shape[-1] == 2:
        pixels = pixels[..., 0]  # grey + alpha: alpha is not part of what the model sees
    return to_rgb_uint8(pixels)


def training_labels(result) -> tuple[np.ndarray, dict[int, int]]:
    """(label map with crowd pixels void, {segment id: category id}) without crowd or unassigned."""
    crowd = [int(i) for i in result.info.get("iscrowd", ())]
    label_map = np.where(np.isin(result.label_map, crowd), 0, result.label_map).astype(np.int32)
    categories = {
        int(row.id): int(row.category_id)
        for row in result.segments.itertuples()
        if int(row.category_id) != UNASSIGNED and int(row.id) not in crowd
    }
    return label_map, categories


class PanopticTrainingData:
    """Loads a dataset folder once; hands out samples and augmented batches."""

    def __init__(self, dataset_dir, val_fraction: float = 0.2, seed: int = 0):
        self.dataset = open_dataset(dataset_dir)
        if len(self.dataset) == 0:
            raise DatasetError(f"{dataset_dir} has no images: export some corrected annotations first")
        self.vocabulary: Vocabulary = self.dataset.vocabulary
        self.samples = {name: self._load(name) for name in self.dataset.names}
        self.train_names, self.val_names = split_names(self.dataset.names, val_fraction, seed)
        if not self.train_names:
            raise InvalidInputError("no training images left after the validation split: lower val_fraction")

    def _load(self, name: str) -> Sample:
        record = self.dataset.image(name)
        if record.image is None or not record.image.is_file():
            raise MissingFileError(f"{name}: the dataset has no image file for it; re-export with the image")
        label_map, categories = training_labels(self.dataset.read(name))
        return Sample(name, read_training_image(record.image), label_map, categories)

    def targets(self, label_map: np.ndarray, categories: dict[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels (T,) as vocabulary indices, masks (T, H, W) float) of one label map."""
        ids = [i for i in np.unique(label_map) if i in categories]
        labels = torch.tensor([self.vocabulary.index_of(categories[i]) for i in ids], dtype=torch.int64)
        if ids:
            masks = torch.from_numpy(np.stack([label_map == i for i in ids])).float()
        else:
            masks = torch.zeros((0, *label_map.shape))
        return labels, masks

    def batch(self, size: int, jitter: JitterConfig, rng: np.random.Generator):
        """(images (B, 3, S, S) in [0, 1], labels list, masks list) of random training samples."""
        names = [self.train_names[int(i)] for i in rng.integers(0, len(self.train_names), size)]
        images, labels, masks = [], [], []
        for name in names:
            sample = self.samples[name]
            image, label_map = large_scale_jitter(sample.image, sample.label_map, jitter, rng)
            images.append(torch.from_numpy(image.transpose(2, 0, 1).copy()).float().div(255))
            target_labels, target_masks = self.targets(label_map, sample.categories)
            labels.append(target_labels)
            masks.append(target_masks)
        return torch.stack(images), labels, masks
