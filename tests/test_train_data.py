"""Training data: images read as inference reads them, crowd left out, augmentation, targets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from synthetic_scenes import VOCABULARY, scene
from napari_odise.image_input import to_rgb_uint8
from napari_odise.io import export_results
from napari_odise.train.augment import JitterConfig, large_scale_jitter
from napari_odise.train.dataset import PanopticTrainingData

SIZE = 32
RED, BLUE = (255, 0, 0), (0, 0, 255)


def sixteen_bit(image: np.ndarray) -> np.ndarray:
    """A dim 16-bit version of an 8-bit image, as microscopes write them (values far below 65535)."""
    return (image.astype(np.uint16) * 4 + 100).astype(np.uint16)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three scenes: a 16-bit grey PNG, a 16-bit RGB TIFF, and one whose first thing is a crowd."""
    import tifffile

    folder = tmp_path_factory.mktemp("training_data")
    pairs = [scene(seed, SIZE) for seed in range(3)]
    grey = sixteen_bit(pairs[0][0][..., 0])
    tiff = folder.parent / "rgb16.tif"
    tifffile.imwrite(tiff, sixteen_bit(pairs[1][0]))
    crowd_result = dataclasses.replace(pairs[2][1], info={"iscrowd": [3]})
    export_results(
        [pairs[0][1], pairs[1][1], crowd_result], folder, [grey, tiff, pairs[2][0]],
        ["grey16", "rgb16", "crowd"], instances=False, semantic=False,
    )
    return folder, {"grey16": grey, "rgb16": sixteen_bit(pairs[1][0])}, pairs


@pytest.fixture(scope="module")
def data(dataset):
    return PanopticTrainingData(dataset[0], val_fraction=0)


@pytest.mark.parametrize("name", ["grey16", "rgb16"])
def test_16_bit_images_are_scaled_as_inference_scales_them(data, dataset, name):
    expected = to_rgb_uint8(dataset[1][name])
    image = data.samples[name].image
    assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(image, expected)
    assert (image == 255).mean() < 0.05  # not the near-white a plain 8-bit conversion gives


def test_crowd_segments_are_void_and_not_targets(data, dataset):
    _, result = dataset[2][2]
    sample = data.samples["crowd"]
    crowd = result.label_map == 3
    assert crowd.any() and 3 not in sample.categories
    assert set(sample.categories) == set(result.segments["id"]) - {3}
    assert (sample.label_map[crowd] == 0).all()
    labels, masks = data.targets(sample.label_map, sample.categories)
    assert len(labels) == len(sample.categories)
    assert masks[:, torch.from_numpy(crowd)].sum() == 0  # no target covers the crowd's pixels


def test_targets_one_mask_per_categorised_segment_in_vocabulary_order(data):
    label_map = np.array([[0, 1, 1], [7, 3, 3], [7, 4, 2]], np.int32)
    categories = {1: 2, 2: 1, 3: 4, 4: 3}  # id 7 has no category (unlabeled), 0 is void
    labels, masks = data.targets(label_map, categories)
    assert labels.tolist() == [VOCABULARY.index_of(c) for c in (2, 1, 4, 3)] == [1, 0, 3, 2]
    assert masks.dtype == torch.float32 and masks.shape == (4, 3, 3)
    for mask, segment_id in zip(masks, (1, 2, 3, 4)):
        assert torch.equal(mask.bool(), torch.from_numpy(label_map == segment_id))


def test_targets_of_an_empty_label_map(data):
    labels, masks = data.targets(np.zeros((4, 5), np.int32), {1: 1})
    assert labels.shape == (0,) and masks.shape == (0, 4, 5)


def test_batch_images_and_targets_agree(data):
    images, labels, masks = data.batch(3, JitterConfig(64, 0.5, 1.5), np.random.default_rng(0))
    assert images.shape == (3, 3, 64, 64) and 0 <= images.min() and images.max() <= 1
    for target_labels, target_masks in zip(labels, masks):
        assert target_masks.shape == (len(target_labels), 64, 64)
        assert (target_masks.sum(dim=(1, 2)) > 0).all()  # only segments left in the crop
        assert target_masks.sum(0).max() <= 1  # panoptic: masks do not overlap


# --- large-scale jitter --------------------------------------------------------------------------
def half_red(height: int = 40, width: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Left half red, right half blue; the label (5) only on the red half."""
    image = np.empty((height, width, 3), np.uint8)
    image[:, : width // 2], image[:, width // 2 :] = RED, BLUE
    labels = np.zeros((height, width), np.int32)
    labels[:, : width // 2] = 5
    return image, labels


@pytest.mark.parametrize("scale", [0.3, 1.0, 1.9])
def test_jitter_output_size(scale):
    image, labels = half_red()
    out_image, out_labels = large_scale_jitter(image, labels, JitterConfig(48, scale, scale), np.random.default_rng(1))
    assert out_image.shape == (48, 48, 3) and out_image.dtype == np.uint8
    assert out_labels.shape == (48, 48) and out_labels.dtype == np.int32


def test_jitter_pads_image_with_pad_value_and_labels_with_void():
    image, labels = half_red(40, 60)
    config = JitterConfig(64, 0.5, 0.5, flip=False, pad_value=128)
    out_image, out_labels = large_scale_jitter(image, labels, config, np.random.default_rng(0))
    # the longer side (60) fits 0.5 * 64 = 32: the image becomes 21 x 32 at the top left
    assert (out_labels[:21, :16] == 5).all() and (out_labels[:21, 16:32] == 0).all()
    assert (out_image[:21, :15] == RED).all() and (out_image[:21, 17:32] == BLUE).all()
    assert (out_image[21:] == 128).all() and (out_image[:, 32:] == 128).all()
    assert (out_labels[21:] == 0).all() and (out_labels[:, 32:] == 0).all()


def test_jitter_flip_keeps_image_and_labels_aligned():
    image, labels = half_red(48, 48)
    config = JitterConfig(48, 1.0, 1.0, flip=True)
    flipped = 0
    for seed in range(12):
        out_image, out_labels = large_scale_jitter(image, labels, config, np.random.default_rng(seed))
        assert (out_image[out_labels == 5] == RED).all() and (out_image[out_labels == 0] == BLUE).all()
        flipped += bool(out_labels[0, -1] == 5)
    assert 0 < flipped < 12  # both outcomes happened


def test_jitter_keeps_labels_on_their_pixels_at_any_scale():
    image, labels = half_red(40, 60)
    config = JitterConfig(32, 0.3, 2.0)
    rng = np.random.default_rng(3)
    for _ in range(40):
        out_image, out_labels = large_scale_jitter(image, labels, config, rng)
        red, blue = out_image[..., 0].astype(int), out_image[..., 2].astype(int)
        assert (red[out_labels == 5] >= blue[out_labels == 5]).all()  # edge pixels blend, but lean red
        assert (red[out_labels == 0] <= blue[out_labels == 0]).all()  # blue half and padding (128, 128, 128)
        assert (red[out_labels == 5] > blue[out_labels == 5]).mean() > 0.7
