"""The safetensors cache: atomic writes, metadata, damage detection (a miss, then a rebuild)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from napari_odise.weights import cache_metadata, cache_path, cache_problem, clear_cache, read_cache, write_cache

SOURCE = "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"


def state():
    torch.manual_seed(0)
    weight = torch.randn(300, 100)  # 120 kB: bytes beyond the sampled head and tail
    return {
        "visual.proj.weight": weight,
        "visual.proj.bias": torch.randn(300),
        "tied.weight": weight,  # shares memory with visual.proj.weight
        "logit_scale": torch.tensor(4.6052),
        "positions": torch.arange(77),
        "half": torch.randn(8).to(torch.bfloat16),
    }


def written(dtype=None):
    path = cache_path("clip", SOURCE, dtype)
    write_cache(state(), path, {"converted_from": "ViT-L-14-336px.pt"}, source_sha256=SOURCE, dtype=dtype)
    return path


def test_round_trip_with_metadata(_isolated_home):
    path = written()
    assert path == _isolated_home / "cache" / f"clip-{SOURCE[:16]}-original.safetensors"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    loaded = read_cache(path)
    expected = state()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key
    metadata = cache_metadata(path)
    assert metadata["format"] == "1"
    assert metadata["source_sha256"] == SOURCE
    assert metadata["dtype"] == "original"
    assert metadata["tensor_count"] == "6"
    assert len(metadata["checksum"]) == 8 and len(metadata["data_crc32"]) == 8
    assert cache_problem(path, source_sha256=SOURCE, deep=True) is None


def test_float16_cache_converts_floats_only():
    path = written(torch.float16)
    assert path.name.endswith("-float16.safetensors")
    loaded = read_cache(path)
    assert loaded["visual.proj.weight"].dtype == torch.float16
    assert loaded["half"].dtype == torch.float16
    assert loaded["positions"].dtype == torch.int64 and torch.equal(loaded["positions"], torch.arange(77))
    assert (loaded["visual.proj.bias"].float() - state()["visual.proj.bias"]).abs().max() < 5e-3
    assert cache_metadata(path)["dtype"] == "float16"


def damaged(path, edit):
    data = bytearray(path.read_bytes())
    edit(data)
    path.write_bytes(bytes(data))


def flip_in_header(data: bytearray):
    at = data.index(b"visual.proj.bias")
    data[at] = ord("W")  # still valid JSON, another tensor name


def flip_json_brace(data: bytearray):
    data[8] = ord("[")


def flip_first_data_byte(data: bytearray):
    header_length = int.from_bytes(data[:8], "little")
    data[8 + header_length] ^= 0xFF


def truncate(data: bytearray):
    del data[-1000:]


@pytest.mark.parametrize("edit", [truncate, flip_in_header, flip_json_brace, flip_first_data_byte])
def test_damaged_cache_is_a_miss_deleted_and_rebuilt(edit, caplog):
    path = written()
    damaged(path, edit)
    assert cache_problem(path) is not None
    with caplog.at_level(logging.WARNING):
        assert read_cache(path) is None
    assert not path.exists()
    assert "discarding cache file" in caplog.text and "rebuilt" in caplog.text

    rebuilt = written()
    assert torch.equal(read_cache(rebuilt)["visual.proj.weight"], state()["visual.proj.weight"])


def test_truncation_is_named_in_the_problem():
    path = written()
    damaged(path, truncate)
    assert "truncated" in cache_problem(path)


def test_damage_inside_a_tensor_needs_the_deep_check():
    path = written()
    loaded = read_cache(path)
    middle = 300 * 100 * 4 // 2  # middle of the largest tensor, far from the sampled head and tail

    def flip_middle(data: bytearray):
        header_length = int.from_bytes(data[:8], "little")
        header = json.loads(bytes(data[8 : 8 + header_length]))
        begin = header["visual.proj.weight"]["data_offsets"][0]
        data[8 + header_length + begin + middle] ^= 0xFF

    del loaded
    damaged(path, flip_middle)
    assert cache_problem(path) is None  # the quick check samples; it cannot see this
    assert "data checksum" in cache_problem(path, deep=True)
    assert read_cache(path, deep=True) is None and not path.exists()


def test_cache_from_another_source_is_a_miss():
    path = written()
    assert read_cache(path, source_sha256="f" * 64) is None
    assert not path.exists()


def test_cache_path_validates_its_parts():
    with pytest.raises(ValueError, match="cache kind"):
        cache_path("../escape", SOURCE)
    with pytest.raises(ValueError, match="source_sha256"):
        cache_path("clip", "not-a-digest")


def test_missing_cache_is_a_quiet_miss(caplog):
    with caplog.at_level(logging.WARNING):
        assert read_cache(cache_path("sd-unet", SOURCE)) is None
    assert caplog.text == ""


def test_clear_cache_removes_cache_and_leftovers():
    path = written()
    leftover = path.parent / f".{path.name}.abc.tmp"
    leftover.write_bytes(b"half a file")
    assert sorted(p.name for p in clear_cache()) == sorted([path.name, leftover.name])
    assert list(path.parent.iterdir()) == []
