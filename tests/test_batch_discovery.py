"""Batch input side: which files, in which order, which shard, and how each format reads."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_odise.batch.discovery import DiscoveryError, discover, parse_shard, select_shard, shard_of
from napari_odise.batch.reading import ImageReadError, Item, expand, read_item
from napari_odise.image_input import to_rgb_uint8


def _touch_png(path, value=0, shape=(16, 16, 3)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "in"
    for name in ["b.png", "a.JPG", "sub/c.tif", "sub/deeper/d.webp", ".hidden.png", "notes.txt", ".cache/e.png"]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return root


def test_discover_is_sorted_filtered_and_keyed_by_relative_path(tree):
    assert [f.key for f in discover([tree])] == ["a.JPG", "b.png"]
    files = discover([tree], recursive=True)
    assert [f.key for f in files] == ["a.JPG", "b.png", "sub/c.tif", "sub/deeper/d.webp"]
    assert files[2].path == (tree / "sub/c.tif").resolve()
    assert [f.key for f in discover([tree], recursive=True, pattern="*.tif")] == ["sub/c.tif"]
    assert [f.key for f in discover([tree], recursive=True, pattern="*.jpg")] == ["a.JPG"]  # case-insensitive
    assert [f.key for f in discover([tree], recursive=True, pattern="sub/*")] == ["sub/c.tif", "sub/deeper/d.webp"]


def test_discover_skips_the_output_folder_and_keys_several_inputs_by_common_parent(tree):
    out = tree / "sub" / "deeper"
    assert [f.key for f in discover([tree], recursive=True, exclude=[out])] == ["a.JPG", "b.png", "sub/c.tif"]
    files = discover([tree / "sub", tree / "b.png"], recursive=True)
    assert [f.key for f in files] == ["b.png", "sub/c.tif", "sub/deeper/d.webp"]
    # a file named directly is taken whatever its suffix; a single file is keyed by its name
    assert [f.key for f in discover([tree / "notes.txt"])] == ["notes.txt"]


def test_discover_refuses_missing_inputs(tmp_path):
    with pytest.raises(DiscoveryError, match="not found"):
        discover([tmp_path / "nope"])
    with pytest.raises(DiscoveryError, match="no input"):
        discover([])


def test_shards_partition_the_files_deterministically(tmp_path):
    root = tmp_path / "many"
    for i in range(40):
        (root / f"img_{i:03d}.png").parent.mkdir(parents=True, exist_ok=True)
        (root / f"img_{i:03d}.png").write_bytes(b"x")
    files = discover([root])
    for by in ("hash", "index"):
        shards = [select_shard(files, i, 3, by) for i in range(3)]
        keys = [f.key for shard in shards for f in shard]
        assert sorted(keys) == [f.key for f in files] and len(set(keys)) == 40
        assert all(shard == sorted(shard) for shard in shards)
    assert [f.key for f in select_shard(files, 1, 3, "index")] == [f"img_{i:03d}.png" for i in range(1, 40, 3)]
    # the hash is sha1 of the key: every process and machine agrees, and adding files moves none
    expected = int.from_bytes(hashlib.sha1(b"img_007.png").digest()[:8], "big") % 3
    assert shard_of("img_007.png", 3) == expected
    before = {f.key for f in select_shard(files, 0, 3, "hash")}
    (root / "img_999.png").write_bytes(b"x")
    after = {f.key for f in select_shard(discover([root]), 0, 3, "hash")}
    assert before <= after and len(after - before) <= 1


def test_parse_shard():
    assert parse_shard("0/4") == (0, 4) and parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/4", "1/0", "a/b", "1"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def _item(path):
    from napari_odise.batch.discovery import ImageFile

    items = expand(ImageFile(path.name, path))
    assert len(items) == 1
    return items[0]


def test_formats_read_to_what_the_model_sees(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for suffix in (".png", ".bmp", ".webp", ".tiff"):
        path = tmp_path / f"rgb{suffix}"
        if suffix == ".tiff":
            tifffile.imwrite(path, rgb)
        elif suffix == ".webp":
            Image.fromarray(rgb).save(path, lossless=True)
        else:
            Image.fromarray(rgb).save(path)
        np.testing.assert_array_equal(to_rgb_uint8(read_item(_item(path))), rgb)
    gray16 = rng.integers(0, 60000, (20, 30), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "g16.tif", gray16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    for name in ("g16.tif", "g16.png"):
        raw = read_item(_item(tmp_path / name))
        assert raw.dtype == np.uint16
        np.testing.assert_array_equal(raw, gray16)
    rgba = np.dstack([rgb, np.full((20, 30), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(to_rgb_uint8(read_item(_item(tmp_path / "rgba.png"))), rgb)
    palette = Image.fromarray(rgb).quantize(16)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_item(_item(tmp_path / "palette.png")), np.asarray(palette.convert("RGB")))
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95)
    assert read_item(_item(tmp_path / "photo.jpg")).shape == (20, 30, 3)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.zeros((20, 30, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: shown as 30 x 20
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_item(_item(tmp_path / "rotated.jpg")).shape == (30, 20, 3)


def test_multipage_tiff_gives_one_item_per_page(tmp_path):
    from napari_odise.batch.discovery import ImageFile

    pages = np.stack([np.full((12, 14), 10 * (i + 1), np.uint8) for i in range(3)])
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="minisblack")
    file = ImageFile("sub/stack.tif", tmp_path / "stack.tif")
    items = expand(file)
    assert [i.key for i in items] == ["sub/stack.tif#p0", "sub/stack.tif#p1", "sub/stack.tif#p2"]
    assert all(i.file_key == "sub/stack.tif" for i in items)
    for i, item in enumerate(items):
        np.testing.assert_array_equal(read_item(item), pages[i])
    (first,) = expand(file, pages="first")
    assert first.key == "sub/stack.tif" and first.page == 0


def test_unreadable_files_raise_with_a_reason(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 20)
    with pytest.raises(ImageReadError, match="cannot read .png image"):
        read_item(_item(tmp_path / "broken.png"))
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "cut.jpg")
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError):
        read_item(_item(tmp_path / "cut.jpg"))
    from napari_odise.batch.discovery import ImageFile

    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageReadError, match="no pages|cannot read"):
        expand(ImageFile("bad.tif", tmp_path / "bad.tif"))


# --- what a folder may hold besides files (issue 15, item 4) -------------------------------
def _odd_folder(root):
    """A real image beside a FIFO, a link loop and a dangling link, all named like images."""
    root.mkdir(parents=True, exist_ok=True)
    _touch_png(root / "a.png")
    os.mkfifo(root / "x.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    (root / "gone.png").symlink_to(root / "nowhere.png")
    return root


def test_discovery_skips_and_reports_what_is_not_a_regular_file(tmp_path, caplog):
    root = _odd_folder(tmp_path / "in")
    with caplog.at_level("WARNING", logger="napari_odise.batch"):
        files = discover([root])  # non-recursive: a loop here used to crash
    assert [f.key for f in files] == ["a.png"]
    reasons = {s.path.name: s.reason for s in files.skipped}
    assert sorted(reasons) == ["gone.png", "loop.png", "x.png"]
    assert "FIFO" in reasons["x.png"] and "loop" in reasons["loop.png"]
    assert "dangling" in reasons["gone.png"] and "nowhere.png" in reasons["gone.png"]
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 3
    assert [f.key for f in discover([root], recursive=True)] == ["a.png"]


def test_a_fifo_named_directly_is_refused_and_never_opened(tmp_path):
    root = _odd_folder(tmp_path / "in")
    with pytest.raises(DiscoveryError, match="FIFO"):
        discover([root / "x.png"])
    with pytest.raises(ImageReadError, match="FIFO"):  # read_item stats before it opens
        read_item(Item("x.png", root / "x.png"))


def test_segment_recursive_over_a_fifo_finishes(tmp_path):
    """The real command, as a process: it used to wait forever on the FIFO."""
    root = _odd_folder(tmp_path / "in")
    (root / "sub").mkdir()
    (root / "sub" / "loop.png").symlink_to(root / "sub" / "loop.png")
    command = Path(sys.executable).with_name("napari-odise")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NAPARI_ODISE_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [str(command), "segment", str(root), "--recursive", "--model", "tiny", "--out",
         str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    for name in ("x.png: a FIFO", "loop.png: a link loop", "sub/loop.png: a link loop",
                 "gone.png: a dangling link"):
        assert name in done.stderr
    assert "Traceback" not in done.stderr
    assert any((tmp_path / "out").rglob("a*.json"))
    summary = json.loads((tmp_path / "out" / "batch_summary.json").read_text())
    ignored = {Path(entry["path"]).relative_to(root).as_posix(): entry["reason"] for entry in summary["ignored"]}
    assert sorted(ignored) == ["gone.png", "loop.png", "sub/loop.png", "x.png"]
    assert "FIFO" in ignored["x.png"] and "dangling" in ignored["gone.png"]
    assert "ignored 4 input name(s) that are not regular files" in done.stdout + done.stderr


def test_cmyk_files_are_read_as_rgb_not_rgba(tmp_path):
    """A CMYK TIFF and JPEG give the colours Pillow gives, never inks shown as RGBA."""
    from napari_odise.io.images import read_image

    inks = np.zeros((16, 16, 4), np.uint8)
    inks[..., 0] = 255  # full cyan: (0, 255, 255)
    tifffile.imwrite(tmp_path / "c.tif", inks, photometric="separated")
    Image.fromarray(inks, mode="CMYK").save(tmp_path / "c.jpg", quality=100)
    for name in ("c.tif", "c.jpg"):
        for pixels in (read_item(Item(name, tmp_path / name)), read_image(tmp_path / name)):
            assert pixels.shape == (16, 16, 3), name
            assert np.abs(pixels[8, 8].astype(int) - [0, 255, 255]).max() <= 3, name
