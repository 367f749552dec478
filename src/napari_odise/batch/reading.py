"""Reading one image of a batch into a numpy array; a multi-page TIFF becomes one item per page.

TIFF goes through tifffile (16-bit, float, multi-page, planar RGB); everything else through
Pillow, with the EXIF orientation applied (as detectron2 and so ODISE's own tools read JPEGs).
Other multi-frame files (animated WebP, APNG) give their first frame. CMYK (JPEG or TIFF) becomes
RGB here, since an array cannot say that its 4 channels are inks rather than RGBA. Pixel values are returned
as stored: the conversion to what the model sees (contrast scaling, alpha and channel handling)
is :func:`napari_odise.image_input.to_rgb_uint8`'s job, shared with napari.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_odise.batch.discovery import ImageFile, not_a_regular_file
from napari_odise.errors import InvalidInputError, UserError
from napari_odise.image_input import cmyk_to_rgb
from napari_odise.pixel_budget import PixelBudgetError, check_tiff_page, open_with_pillow

TIFF_SUFFIXES = (".tif", ".tiff")
PAGE_MODES = ("all", "first")
PAGE_MARK = "#p"  # "stack.tif#p3": page 3 (zero-based) of stack.tif


class ImageReadError(UserError, RuntimeError):
    """The file could not be read as an image; the message says why (the key says which)."""


@dataclass(frozen=True)
class Item:
    """One picture the batch segments: a file, or one page of a multi-page TIFF."""

    key: str
    path: Path
    page: int = 0
    file_key: str = ""  # the key of the file it comes from (shards and failures are per file)


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES


def _check_regular(path: Path) -> None:
    """Refuse before opening anything that is not a regular file (a FIFO would block)."""
    reason = not_a_regular_file(path)
    if reason is not None:
        raise ImageReadError(f"not read: it is {reason}")


def count_pages(path: Path) -> int:
    _check_regular(path)
    if not _is_tiff(path):
        return 1
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.pages)
    except Exception as error:  # noqa: BLE001 - any parse failure means "unreadable file"
        raise ImageReadError(_reason(path, error)) from error


def expand(file: ImageFile, pages: str = "all") -> list[Item]:
    """The items of a file: one, or one per TIFF page with ``pages="all"``."""
    if pages not in PAGE_MODES:
        raise InvalidInputError(f"pages must be one of {PAGE_MODES}, got {pages!r}")
    count = count_pages(file.path)
    if count == 0:
        raise ImageReadError("the TIFF has no pages (damaged, or not an image file)")
    if count == 1 or pages == "first":
        return [Item(file.key, file.path, 0, file.key)]
    return [Item(f"{file.key}{PAGE_MARK}{p}", file.path, p, file.key) for p in range(count)]


def read_item(item: Item) -> np.ndarray:
    """The item's pixels as stored (any dtype, grayscale/RGB/RGBA, maybe channel-first)."""
    _check_regular(item.path)
    try:
        if _is_tiff(item.path):
            return _read_tiff_page(item.path, item.page)
        return _read_with_pillow(item.path)
    except ImageReadError:
        raise
    except PixelBudgetError as error:  # a failure of this image; the batch goes on
        raise ImageReadError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - any decoder failure means "unreadable file"
        raise ImageReadError(_reason(item.path, error)) from error


def _read_tiff_page(path: Path, page: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tiff_page = tif.pages[page]
        check_tiff_page(tiff_page, path.name)
        pixels = np.asarray(tiff_page.asarray())
        if tiff_page.photometric == tifffile.PHOTOMETRIC.SEPARATED:  # CMYK inks, not RGBA
            return cmyk_to_rgb(pixels)
        return pixels


# Pillow modes whose numpy form to_rgb_uint8 cannot take directly.
_CONVERT = {"PA": "RGBA", "LA": "RGBA", "1": "L", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


def _read_with_pillow(path: Path) -> np.ndarray:
    from PIL import ImageOps

    with open_with_pillow(path) as image:  # the header's size checked before decoding
        image.load()  # decode now, so truncated files fail here
        image = ImageOps.exif_transpose(image)
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif image.mode in _CONVERT:
            image = image.convert(_CONVERT[image.mode])
        return np.asarray(image)


def _reason(path: Path, error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return f"cannot read {path.suffix or 'the file'} image ({type(error).__name__}: {text})"
