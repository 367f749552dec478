"""Turn what napari users have into the uint8 RGB image ODISE expects, or explain why not.

Accepted: 2-D grayscale, RGB or RGBA, channel-last or channel-first, uint8 / uint16 / other ints /
floats / bool. Non-uint8 data is contrast-scaled to 0..255, with the caller's contrast limits when
given (napari's layer.contrast_limits: the model sees what the user sees) or else robust
percentiles. Refused, with what to do: empty arrays, images smaller than ``MIN_SIDE``, strips
longer than ``MAX_ASPECT`` times their width, stacks (3-D without a colour axis, 4-D and more)
unless a plane is chosen, 2-channel images. A 4-channel array is RGBA: an array cannot say it is
CMYK, so CMYK files are converted to RGB when read (batch reader, napari-odise's image reading).
"""

from __future__ import annotations

import numpy as np

from napari_odise.errors import UserError

MIN_SIDE = 8
MAX_LONG_SIDE = 2560  # the evaluation resize's cap on the long side (see model/settings.py)
MAX_ASPECT = MAX_LONG_SIDE // MIN_SIDE  # longer than this, the short side drops below MIN_SIDE
PERCENTILES = (0.5, 99.5)


class ImageInputError(UserError, ValueError):
    """The array cannot be used as an image; the message says what to do."""


def _channel_axis(shape: tuple[int, ...]) -> int | None:
    """The colour axis of a 3-D array, or None when it is a stack of planes."""
    last, first = shape[-1], shape[0]
    if last in (1, 3, 4):
        return 2
    # channel-first only for RGB: a leading 4 is as likely a stack of 4 planes as RGBA
    if first in (1, 3) and shape[1] >= MIN_SIDE and shape[2] >= MIN_SIDE:
        return 0
    return None


def to_rgb_uint8(image, contrast_limits: tuple[float, float] | None = None, plane: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 from a napari-style image array."""
    array = np.asarray(image)
    if array.size == 0:
        raise ImageInputError("the image is empty (it has no pixels): open or select an image with data")
    if array.ndim == 3 and array.shape[-1] == 2 and _channel_axis(array.shape) is None:
        raise ImageInputError(
            f"the image has shape {array.shape}: 2 channels per pixel (e.g. grey + alpha, or two "
            "measurements). ODISE needs grey or RGB: pick one channel (image[..., 0]) or combine "
            "them into RGB"
        )
    if array.ndim >= 4 or (array.ndim == 3 and _channel_axis(array.shape) is None):
        if plane is None and array.ndim == 3 and array.shape[0] == 4:
            raise ImageInputError(
                f"the image has shape {array.shape}: either 4 planes or RGBA with channels first. "
                "For a plane, pass `plane=` (the current slice in napari); for RGBA, pass "
                "np.moveaxis(image, 0, -1) so the channels come last"
            )
        if plane is None:
            raise ImageInputError(
                f"the image has shape {array.shape}: it looks like a stack of planes. Choose one plane "
                "(the current slice in napari, or `plane=` in a script) or run on all planes one by one"
            )
        array = np.asarray(array[plane])
        return to_rgb_uint8(array, contrast_limits)
    if array.ndim == 3:
        if _channel_axis(array.shape) == 0:
            array = np.moveaxis(array, 0, -1)
        channels = array.shape[-1]
        if channels == 4:
            array = array[..., :3]  # alpha is not part of what the model sees
        elif channels == 1:
            array = array[..., 0]
        elif channels != 3:
            raise ImageInputError(f"cannot use a {channels}-channel image; pick one channel or make an RGB image")
    if array.ndim not in (2, 3):
        raise ImageInputError(f"expected a 2-D image, got shape {array.shape}")
    h, w = array.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageInputError(f"the image is {h}x{w} pixels; ODISE needs at least {MIN_SIDE}x{MIN_SIDE}")
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise ImageInputError(
            f"the image is {w} pixels wide and {h} high, {max(h, w) / min(h, w):.0f} times longer "
            f"than wide: ODISE scales the long side to at most {MAX_LONG_SIDE} pixels, which would "
            f"leave the short side under {MIN_SIDE}. Cut it into pieces at most {MAX_ASPECT} "
            "times longer than wide"
        )
    scaled = _to_uint8(array, contrast_limits)
    if scaled.ndim == 2:
        scaled = np.repeat(scaled[..., None], 3, axis=2)
    return np.ascontiguousarray(scaled)


def _to_uint8(array: np.ndarray, contrast_limits) -> np.ndarray:
    if array.dtype == np.uint8 and contrast_limits is None:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    data = array.astype(np.float64, copy=False)
    finite = np.isfinite(data)
    if not finite.any():
        raise ImageInputError("the image has no finite values (all NaN or infinite)")
    if contrast_limits is not None:
        low, high = (float(v) for v in contrast_limits)
    elif np.issubdtype(array.dtype, np.floating) and data[finite].min() >= 0 and data[finite].max() <= 1:
        low, high = 0.0, 1.0  # a float image already in [0, 1]
    else:
        low, high = np.percentile(data[finite], PERCENTILES)
    if high <= low:
        high = low + 1.0
    out = (np.nan_to_num(data, nan=low, posinf=high, neginf=low) - low) / (high - low)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def cmyk_to_rgb(array: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from 8-bit CMYK ink coverage (0 = no ink), as Pillow converts it:
    each colour is (255 - ink) scaled by (255 - black) / 255."""
    inks = np.asarray(array)
    if inks.ndim != 3 or inks.shape[-1] < 4 or inks.dtype != np.uint8:
        raise ImageInputError(
            f"cannot convert CMYK data of shape {inks.shape} and type {inks.dtype}: only 8-bit "
            "CMYK is supported; convert the image to RGB first"
        )
    ink = inks[..., :4].astype(np.uint16)
    white = 255 - ink[..., 3:4]
    return ((255 - ink[..., :3]) * white // 255).astype(np.uint8)
