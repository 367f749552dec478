"""Small files cannot demand huge memory (issue 15, item 6): every decoder and every size a JSON
file declares is checked against one pixel budget before anything is decoded or allocated."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image
from test_io_samples import LITERAL_MAP, literal_result, random_image

from napari_odise.batch.reading import ImageReadError, Item, read_item
from napari_odise.io import export_result, read_instances, read_panoptic
from napari_odise.batch.coco import _copyable
from napari_odise.io.images import image_shape, read_image
from napari_odise.pixel_budget import ENVIRONMENT_VARIABLE, PixelBudgetError, check_pixels, max_pixels

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def bomb_png(path, width, height):
    """A valid PNG header declaring width x height, with one tiny compressed row of data: a
    few hundred bytes that would decode to width * height pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    data = zlib.compress(b"\0" * (width + 1), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))
    return path


def bomb_tiff(path, side):
    """A TIFF of side x side zeros in compressed tiles: a few hundred KB on disk."""
    tile = np.zeros((1024, 1024), np.uint8)
    tiles = (tile for _ in range((side // 1024) ** 2))
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(tiles, shape=(side, side), dtype=np.uint8, tile=(1024, 1024),
                   compression="zlib")
    return path


def test_budget_is_configurable_and_explained(monkeypatch):
    assert max_pixels() == 100_000_000
    with pytest.raises(PixelBudgetError, match=rf"20000x20000 = 400 million.*{ENVIRONMENT_VARIABLE}"):
        check_pixels(20000, 20000, "x.png")
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "500000000")
    check_pixels(20000, 20000, "x.png")
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "lots")
    with pytest.raises(PixelBudgetError, match="not a positive whole number"):
        max_pixels()
    for bad in ((-1, 5), ("5", 5), (5.0, 5)):
        monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
        with pytest.raises(PixelBudgetError):
            check_pixels(*bad, "entry")


def test_a_small_tiff_declaring_20480_squared_is_refused_before_decoding(tmp_path):
    path = bomb_tiff(tmp_path / "bomb.tif", 20480)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(ImageReadError, match="20480x20480 = 419 million"):  # a batch failure
        read_item(Item("bomb.tif", path))
    with pytest.raises(PixelBudgetError, match="bomb.tif"):
        read_image(path)  # the napari reader's image reading


def test_a_bomb_png_is_refused_before_decoding(tmp_path, monkeypatch):
    path = bomb_png(tmp_path / "bomb.png", 12000, 12000)  # 144 MP: Pillow alone only warns
    assert path.stat().st_size < 200_000
    with pytest.raises(ImageReadError, match="12000x12000 = 144 million"):
        read_item(Item("bomb.png", path))
    with pytest.raises(PixelBudgetError):
        read_image(path)
    with pytest.raises(PixelBudgetError):  # the exporter's size check reads the header the same way
        image_shape(path)
    assert not _copyable(Item("bomb.png", path))  # the COCO writer's EXIF look, too
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(10 * 10))
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((11, 11), np.uint8)).save(small)
    with pytest.raises(ImageReadError, match="11x11 = 121 pixels, over napari-odise's budget of 100 "):
        read_item(Item("small.png", small))


def test_json_declared_sizes_are_checked_before_allocating(tmp_path):
    root = tmp_path / "ds"
    export_result(literal_result(), root, image=random_image(LITERAL_MAP.shape),
                  image_name="street", instances=True)
    instances = root / "annotations" / "instances.json"
    data = json.loads(instances.read_text())
    data["images"][0].update(height=20000, width=20000)
    instances.write_text(json.dumps(data))
    with pytest.raises(PixelBudgetError, match="20000x20000 = 400 million"):
        read_instances(instances)
    data["images"][0].update(height="48", width=None)
    instances.write_text(json.dumps(data))
    with pytest.raises(PixelBudgetError, match="whole numbers"):
        read_instances(instances)
    panoptic = root / "annotations" / "panoptic.json"
    data = json.loads(panoptic.read_text())
    data["images"][0].update(height=30000, width=30000)
    panoptic.write_text(json.dumps(data))
    with pytest.raises(PixelBudgetError, match="30000x30000"):
        read_panoptic(panoptic)


def test_a_bomb_panoptic_png_is_refused(tmp_path):
    root = tmp_path / "ds"
    export_result(literal_result(), root, image=random_image(LITERAL_MAP.shape), image_name="street")
    bomb_png(root / "panoptic" / "street.png", 15000, 15000)
    panoptic = root / "annotations" / "panoptic.json"
    data = json.loads(panoptic.read_text())
    data["images"][0].pop("height")
    data["images"][0].pop("width")
    panoptic.write_text(json.dumps(data))
    with pytest.raises(PixelBudgetError, match="street.png"):
        read_panoptic(panoptic)
