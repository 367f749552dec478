"""Crop layout, stride grouping, DDPM noising and test-time resize, against hand-computed values."""

import math

import pytest
import torch
from torch.nn import functional as F

from napari_odise.model.diffusion_features import ddpm_coefficients_t0, shared_noise
from napari_odise.model.preprocess import shortest_edge_size
from napari_odise.model.sliding_window import CropBox, crop_boxes, stride_groups


@pytest.mark.parametrize(
    "height, width, side, boxes",
    [
        # the trace's 512x640 input: two crops, the second shifted back to end at the border
        (512, 640, 512, [(0, 512, 0, 512), (0, 512, 128, 640)]),
        (512, 512, 512, [(0, 512, 0, 512)]),
        # COCO evaluation size 1024x1344 (padded): 2 x 3 crops, last column shifted to 832
        (1024, 1344, 512, [(0, 512, 0, 512), (0, 512, 512, 1024), (0, 512, 832, 1344),
                           (512, 1024, 0, 512), (512, 1024, 512, 1024), (512, 1024, 832, 1344)]),
        # short side below 512: crops of the short side
        (384, 1024, 384, [(0, 384, 0, 384), (0, 384, 384, 768), (0, 384, 640, 1024)]),
        (640, 448, 448, [(0, 448, 0, 448), (192, 640, 0, 448)]),
    ],
)
def test_crop_boxes_follow_official_layout(height, width, side, boxes):
    got_side, got = crop_boxes(height, width, 512)
    assert got_side == side
    assert got == [CropBox(*b) for b in boxes]


def test_stride_grouping_of_official_taps(official_meta_model):
    taps = official_meta_model.features.taps
    assert [(t.source, t.index, t.channels, t.stride) for t in taps] == [
        ("encoder", 5, 512, 4),
        ("encoder", 7, 512, 8),
        ("unet", 2, 2560, 64),
        ("unet", 5, 1920, 32),
        ("unet", 8, 960, 16),
        ("unet", 11, 640, 8),
        ("decoder", 2, 512, 8),
        ("decoder", 5, 512, 4),
    ]
    groups = stride_groups(taps, 4, 32)
    assert [(g.name, g.stride, g.members) for g in groups] == [
        ("s2", 4, (0, 7)),
        ("s3", 8, (1, 5, 6)),
        ("s4", 16, (4,)),
        ("s5", 32, (2, 3)),
    ]


def test_ddpm_noising_at_t0(tiny_model):
    a, b = ddpm_coefficients_t0()
    assert a == pytest.approx(0.9995749096, abs=1e-9)
    assert b == pytest.approx(0.0291547595, abs=1e-9)
    assert a**2 + b**2 == pytest.approx(1.0)
    noise = shared_noise(42, 64)
    expected_noise = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(42))
    torch.testing.assert_close(noise, expected_noise, rtol=0, atol=0)

    latent = torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    features = tiny_model.features
    features.noise = noise  # full-size noise: no resize
    try:
        torch.testing.assert_close(features.noised(latent), a * latent + b * noise.expand(2, -1, -1, -1))
        small = latent[:, :, :16, :16]
        resized = F.interpolate(noise, size=(16, 16), mode="bicubic", align_corners=False)
        torch.testing.assert_close(features.noised(small), a * small + b * resized.expand(2, -1, -1, -1))
    finally:
        features.noise = shared_noise(tiny_model.config.noise_seed, tiny_model.config.noise_size)


@pytest.mark.parametrize(
    "size, expected",
    [
        ((512, 640), (1024, 1280)),
        ((480, 640), (1024, 1365)),  # 640 * 1024 / 480 = 1365.33
        ((400, 3000), (341, 2560)),  # the long side caps at 2560
        ((1024, 1024), (1024, 1024)),
        ((2000, 1000), (2048, 1024)),
    ],
)
def test_shortest_edge_resize_matches_detectron2(size, expected):
    assert shortest_edge_size(*size, 1024, 2560) == expected


def test_crop_count_for_a_typical_photo():
    # a 640x480 photo is resized to 1365x1024 and padded to 1408x1024: 2 x 3 crops
    h, w = shortest_edge_size(480, 640, 1024, 2560)
    ph, pw = math.ceil(h / 64) * 64, math.ceil(w / 64) * 64
    assert (ph, pw) == (1024, 1408)
    side, boxes = crop_boxes(ph, pw, 512)
    assert side == 512 and len(boxes) == 6
