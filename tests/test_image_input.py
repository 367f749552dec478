import numpy as np
import pytest

from napari_odise.image_input import ImageInputError, to_rgb_uint8


def test_uint8_rgb_passes_through():
    img = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    out = to_rgb_uint8(img)
    np.testing.assert_array_equal(out, img)


def test_grayscale_is_repeated_to_rgb():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = to_rgb_uint8(img)
    assert out.shape == (16, 16, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], img)


def test_rgba_drops_alpha_and_channel_first_rgb_is_moved():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 20, 30), dtype=np.uint8)
    rgba_last = np.dstack([np.moveaxis(rgb, 0, -1), np.zeros((20, 30), np.uint8)])
    np.testing.assert_array_equal(to_rgb_uint8(rgba_last), np.moveaxis(rgb, 0, -1))
    np.testing.assert_array_equal(to_rgb_uint8(rgb), np.moveaxis(rgb, 0, -1))


def test_uint16_is_contrast_scaled_with_given_limits():
    img = np.array([[0, 1000], [2000, 4000]], np.uint16).repeat(8, 0).repeat(8, 1)
    out = to_rgb_uint8(img, contrast_limits=(1000, 3000))
    assert out[0, 0, 0] == 0  # below the limit
    assert out[0, 8, 0] == 0  # at the lower limit
    assert out[8, 0, 0] == 128  # (2000 - 1000) / 2000 * 255 = 127.5 -> 128
    assert out[8, 8, 0] == 255  # above the upper limit


def test_uint16_default_uses_robust_percentiles():
    rng = np.random.default_rng(1)
    img = rng.integers(100, 200, (32, 32)).astype(np.uint16)
    img[0, 0] = 60000  # one hot pixel must not flatten the rest
    out = to_rgb_uint8(img)[..., 0]
    assert out[0, 0] == 255
    assert np.ptp(out[1:, 1:]) > 200


def test_float_in_unit_range_and_nan():
    img = np.full((16, 16), 0.5)
    img[0, 0] = np.nan
    out = to_rgb_uint8(img)
    assert out[1, 1, 0] == 128 and out[0, 0, 0] == 0


def test_bool_mask_image():
    img = np.zeros((16, 16), bool)
    img[4:8] = True
    out = to_rgb_uint8(img)
    assert set(np.unique(out)) == {0, 255}


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros((1, 1)), "at least 8x8"),
        (np.zeros((4, 64, 64)), "either 4 planes or RGBA with channels first.*moveaxis"),
        (np.zeros((5, 64, 64)), "stack of planes"),
        (np.zeros((2, 3, 64, 64)), "stack of planes"),
        (np.zeros((64, 64, 2)), "2 channels per pixel"),
        (np.full((16, 16), np.nan), "no finite values"),
    ],
)
def test_refusals(array, message):
    with pytest.raises(ImageInputError, match=message):
        to_rgb_uint8(array)


def test_plane_selection():
    stack = np.stack([np.zeros((16, 16), np.uint8), np.full((16, 16), 7, np.uint8)])
    assert to_rgb_uint8(stack, plane=1)[0, 0, 0] == 7


# --- messages that say what the array is (issue 15, item 9) --------------------------------
def test_two_channel_images_are_named_as_such():
    with pytest.raises(ImageInputError, match=r"2 channels per pixel.*image\[\.\.\., 0\]"):
        to_rgb_uint8(np.zeros((32, 48, 2), np.uint8))


def test_a_long_strip_is_refused_for_its_proportions():
    with pytest.raises(ImageInputError, match="100000 pixels wide and 8 high, 12500 times longer"):
        to_rgb_uint8(np.zeros((8, 100000), np.uint8))
    assert to_rgb_uint8(np.zeros((8, 2560), np.uint8)).shape == (8, 2560, 3)


def test_cmyk_becomes_rgb_like_pillow_converts_it():
    from PIL import Image

    from napari_odise.image_input import cmyk_to_rgb

    inks = np.random.default_rng(0).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(inks, mode="CMYK").convert("RGB")).astype(int)
    assert np.abs(cmyk_to_rgb(inks).astype(int) - pillow).max() <= 1
    assert cmyk_to_rgb(np.array([[[0, 0, 0, 0], [0, 0, 0, 255]]], np.uint8)).tolist() == [
        [[255, 255, 255], [0, 0, 0]]
    ]
