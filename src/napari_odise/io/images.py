"""Image files in and out: deterministic PNGs, and the size or pixels of whatever a user brings.

PNGs are written by Pillow without metadata chunks (no time stamps), so the same array gives the
same bytes and exported datasets can be compared byte for byte. Source images are copied as they
are (no re-encoding, no quality loss); only arrays are written, always as PNG.

Photos are read upright, with their EXIF orientation applied, as the batch reader does
(:mod:`napari_odise.batch.reading`, like detectron2): pixels and sizes read here agree with the
label maps made from them. napari's built-in reader shows the stored pixels without the
rotation (see docs/batch.md).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from napari_odise.atomic import atomic_write_bytes
from napari_odise.image_input import cmyk_to_rgb
from napari_odise.pixel_budget import check_tiff_series, open_with_pillow

_TIFF_SUFFIXES = {".tif", ".tiff"}
_ORIENTATION = 0x0112  # the EXIF tag
_QUARTER_TURNS = (5, 6, 7, 8)  # orientations that turn the image by 90 degrees


def check_png_array(array: np.ndarray) -> np.ndarray:
    """The array if PNG can hold it exactly (bool becomes uint8 0/1), else ValueError."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    gray = array.ndim == 2
    color = array.ndim == 3 and array.shape[2] in (3, 4)
    if not (array.dtype == np.uint8 and (gray or color)) and not (
        array.dtype == np.uint16 and gray
    ):
        raise ValueError(
            f"cannot write a {array.dtype} array of shape {array.shape} as PNG: use uint8 "
            f"(H, W), (H, W, 3) or (H, W, 4), or uint16 (H, W)"
        )
    return array


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 gray/RGB/RGBA or uint16 gray array (bool counts as uint8 0/1)."""
    array = check_png_array(array)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as a PNG, atomically."""
    return atomic_write_bytes(path, encode_png(array))


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Pixels of a PNG as stored (uint8 or uint16; palette images keep their indices)."""
    with open_with_pillow(path) as image:
        image.load()
        return np.asarray(image)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Pixels of an image file (TIFF through tifffile, the rest through Pillow, upright)."""
    path = Path(path)
    if path.suffix.lower() in _TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            check_tiff_series(tiff.series[0], path.name)
            pixels = np.asarray(tiff.asarray())
            if tiff.pages[0].photometric == tifffile.PHOTOMETRIC.SEPARATED:
                return cmyk_to_rgb(pixels)  # inks, which would otherwise show as RGBA
            return pixels
    with open_with_pillow(path) as image:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in ("P", "PA"):
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif image.mode == "CMYK":
            image = image.convert("RGB")
        return np.asarray(image)


def image_shape(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file, from its header where the format allows."""
    path = Path(path)
    if path.suffix.lower() in _TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            shape = tiff.series[0].shape
        if len(shape) == 3 and shape[-1] in (3, 4):
            return int(shape[0]), int(shape[1])
        if len(shape) != 2:
            raise ValueError(f"{path}: expected a 2-D (optionally RGB) image, got shape {shape}")
        return int(shape[0]), int(shape[1])
    try:
        with open_with_pillow(path) as image:  # the header only, within the pixel budget
            width, height = image.size
            if image.getexif().get(_ORIENTATION, 1) in _QUARTER_TURNS:  # read upright: sides swap
                width, height = height, width
    except OSError as error:
        raise ValueError(f"{path}: not an image Pillow or tifffile can read ({error})") from None
    return height, width
