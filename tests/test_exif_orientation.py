"""A phone photo stored sideways with an EXIF orientation tag: the batch reader (what the model
sees) and napari-odise's own image reading (the layers beside the labels, the exporter's size
check) read it upright alike; napari's built-in reader shows the stored pixels, as docs/batch.md
says."""

import numpy as np
import pytest
from PIL import Image

from napari_odise.batch.discovery import discover
from napari_odise.batch.reading import expand, read_item
from napari_odise.io.images import image_shape, read_image

ROTATE_90_CLOCKWISE = 6  # EXIF orientation: show the stored pixels turned a quarter clockwise


@pytest.fixture
def sideways_jpeg(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # 20 high, 40 wide as stored
    stored[:8, :8] = (255, 0, 0)  # a red block in the stored top-left corner
    stored[12:, 30:] = (0, 0, 255)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = ROTATE_90_CLOCKWISE
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as saved:
        as_stored = np.asarray(saved.convert("RGB"))  # Pillow's decode, no rotation
    return path, as_stored


def test_batch_and_io_read_an_exif_rotated_jpeg_upright_alike(sideways_jpeg):
    path, as_stored = sideways_jpeg
    upright = np.rot90(as_stored, k=-1)  # a quarter turn clockwise
    assert upright.shape == (40, 20, 3)
    (item,) = expand(discover([path])[0])
    np.testing.assert_array_equal(read_item(item), upright)
    np.testing.assert_array_equal(read_image(path), upright)
    assert image_shape(path) == (40, 20)
    # the stored top-left red block is now at the top right
    assert read_image(path)[:8, -8:, 0].mean() > 200 and read_image(path)[:8, -8:, 2].mean() < 50


def test_napari_builtin_reader_shows_the_stored_pixels(sideways_jpeg):
    from napari_builtins.io._read import imread

    path, as_stored = sideways_jpeg
    shown = imread(str(path))
    assert shown.shape == (20, 40, 3)  # not upright: results made by napari-odise do not overlay it
    np.testing.assert_array_equal(shown, as_stored)
