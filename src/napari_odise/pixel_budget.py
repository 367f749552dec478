"""The most pixels napari-odise decodes or allocates for one image, checked before it does.

A 419-byte TIFF header can declare 20480x20480 pixels, a 142-byte instances JSON 20000x20000: the
file is small, the memory it demands is not. Every image decoder (Pillow and tifffile alike) and
every size declared in a JSON file goes through :func:`check_pixels` first, with the size the
file *declares*, so nothing is decoded or allocated for an image over the budget. (Pillow's own
``MAX_IMAGE_PIXELS`` only warns below twice its value, and tifffile has no limit.)

The budget is ``NAPARI_ODISE_MAX_PIXELS`` (an integer, e.g. ``300000000``; default 100 million,
above any camera photo; ODISE scales images to at most 2560 pixels on the long side anyway).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from napari_odise.errors import UserError

ENVIRONMENT_VARIABLE = "NAPARI_ODISE_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 100_000_000


class PixelBudgetError(UserError, ValueError):
    """An image (or a size a file declares) over the pixel budget; nothing was decoded."""


def max_pixels() -> int:
    """The budget in force: ``NAPARI_ODISE_MAX_PIXELS`` when set, else the default."""
    text = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise PixelBudgetError(
            f"{ENVIRONMENT_VARIABLE}={text!r} is not a positive whole number of pixels "
            f"(e.g. 300000000): fix or unset it"
        )
    return value


def check_pixels(height: object, width: object, what: str, planes: int = 1) -> None:
    """Refuse ``what`` (a file, an image entry) if ``height`` x ``width`` (x ``planes``) is not
    a sane size or is over the budget."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (height, width)):
        raise PixelBudgetError(f"{what}: height and width must be whole numbers, got "
                               f"{height!r} and {width!r}")
    if height <= 0 or width <= 0:
        raise PixelBudgetError(f"{what}: declares {width}x{height} pixels, which is no image")
    total = height * width * max(int(planes), 1)
    budget = max_pixels()
    if total > budget:
        planes_text = f" x {planes} planes" if planes > 1 else ""
        raise PixelBudgetError(
            f"{what} is {width}x{height}{planes_text} = {_amount(total)} pixels, over "
            f"napari-odise's budget of {_amount(budget)} (it would need about "
            f"{total * 3 / 2**30:.1f} GiB or more to decode): downscale or crop it, or raise the "
            f"budget with {ENVIRONMENT_VARIABLE}={total}"
        )


def _amount(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} million" if pixels >= 1_000_000 else str(pixels)


@contextmanager
def open_with_pillow(path: str | os.PathLike):
    """``PIL.Image.open``, refused before decoding when the header's size is over the budget.

    Pillow warns about large images itself (only Image.open checks); the warning is replaced
    by this check, which refuses instead. Pillow still refuses images over twice its own
    ``Image.MAX_IMAGE_PIXELS`` whatever the budget says."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError as error:
            raise PixelBudgetError(f"{Path(path).name}: {error}") from None
    with image:
        width, height = image.size
        check_pixels(height, width, Path(path).name)
        yield image


def check_tiff_page(page, what: str) -> None:
    """A tifffile page's declared size against the budget (before ``asarray``)."""
    check_pixels(int(page.imagelength), int(page.imagewidth), what,
                 max(int(getattr(page, "imagedepth", 1) or 1), 1))


def check_tiff_series(series, what: str) -> None:
    """A tifffile series' declared shape (every page of a stack) against the budget."""
    shape = [int(v) for v in series.shape]
    if len(shape) >= 3 and shape[-1] in (3, 4, 5):  # colour samples per pixel
        shape = shape[:-1]
    if len(shape) < 2:
        raise PixelBudgetError(f"{what}: declares shape {tuple(series.shape)}, which is no image")
    planes = 1
    for extent in shape[:-2]:
        planes *= extent
    check_pixels(shape[-2], shape[-1], what, planes)
