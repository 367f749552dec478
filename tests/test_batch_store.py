"""The batch zarr store: round trips, labelsets, atomic groups, refusing foreign results."""

import json
import os

import numpy as np
import pytest
import torch

from napari_odise import PanopticResult, Vocabulary
from napari_odise.batch.publish import new_partial_folder, partial_root
from napari_odise.batch.store import (
    BatchStore,
    StoreError,
    labelset_id,
    safe_name,
    storage_roundtrip,
)
from napari_odise.model.odise import EncodedImage
from napari_odise.model.postprocess import MaskGeometry
from napari_odise.model.settings import InferenceSettings

SETTINGS = InferenceSettings.evaluation(short_edge=128, max_size=320, crop_size=128)
VOCAB = Vocabulary.parse("cat\ndog\ngrass (stuff)")


def header(vocabulary=VOCAB, embeddings="float32"):
    return {
        "format": 1,
        "model": "tiny",
        "precision": "fp32",
        "encode_settings": SETTINGS.encode_part(),
        "embeddings": embeddings,
        "labels": labelset_id(vocabulary, SETTINGS),
    }


def encoded(seed=0, caption=False):
    g = torch.Generator().manual_seed(seed)
    return EncodedImage(
        mask_logits=torch.randn(5, 8, 12, generator=g),
        mask_embed=torch.randn(5, 16, generator=g),
        clip_mask_embed=torch.randn(5, 24, generator=g),
        logit_scale=14.285714149475098,
        clip_logit_scale=100.0,
        class_logits=torch.randn(5, 2, generator=g) if caption else None,
        geometry=MaskGeometry((32, 48), (30, 45), (60, 90)),
        settings=SETTINGS,
    )


def result(vocabulary=VOCAB):
    label_map = np.zeros((60, 90), np.int32)
    label_map[:30, :40] = 1
    label_map[30:, 50:] = 2
    cat, grass = vocabulary.by_name("cat"), vocabulary.by_name("grass")
    info = [
        {"id": 1, "category_id": cat.id, "isthing": True, "score": 0.123456789012345, "query_ids": [3]},
        {"id": 2, "category_id": grass.id, "isthing": False, "score": 0.5, "query_ids": [0, 4]},
    ]
    return PanopticResult.from_segments_info(label_map, info, vocabulary)


def test_safe_names_are_unique_plain_folder_names():
    keys = ["a/b.png", "a_b.png", "a b.png", "stack.tif#p3", ".hidden.png", "é/ü.tif"]
    names = [safe_name(k) for k in keys]
    assert len(set(names)) == len(keys)
    for name in names:
        assert "/" not in name and not name.startswith(".") and name.isascii()


def test_image_and_labels_round_trip(tmp_path):
    store = BatchStore.open_or_create(tmp_path / "s.zarr", header(), VOCAB, SETTINGS)
    assert not store.has_image("x.png") and not store.has_labels("x.png")
    enc, res = encoded(caption=True), result()
    assert store.write_image("x.png", "x.png", 0, (60, 90), enc)
    assert store.write_labels("x.png", res)
    store = BatchStore.open(tmp_path / "s.zarr")
    assert store.keys() == ["x.png"] and store.has_image("x.png") and store.has_labels("x.png")
    back = store.load_encoded("x.png")
    for name in ("mask_logits", "mask_embed", "clip_mask_embed", "class_logits"):
        assert torch.equal(getattr(back, name), getattr(enc, name))
    assert (back.logit_scale, back.clip_logit_scale, back.geometry) == (enc.logit_scale, enc.clip_logit_scale, enc.geometry)
    loaded = store.load_result("x.png")
    np.testing.assert_array_equal(loaded.label_map, res.label_map)
    assert loaded.segments.to_dict("records") == res.segments.to_dict("records")  # exact float scores
    assert loaded.query_ids == {1: [3], 2: [0, 4]}
    assert loaded.vocabulary == VOCAB
    # a second writer of the same image keeps the first, complete copy
    assert not store.write_labels("x.png", res)


def test_float16_store_gives_back_what_the_roundtrip_predicted(tmp_path):
    store = BatchStore.open_or_create(tmp_path / "s.zarr", header(embeddings="float16"), VOCAB, SETTINGS)
    enc = encoded(1)
    rounded = storage_roundtrip(enc, "float16")
    assert not torch.equal(rounded.mask_logits, enc.mask_logits)
    store.write_image("y.png", "y.png", 0, (60, 90), enc)
    back = store.load_encoded("y.png")
    assert back.mask_logits.dtype == torch.float32
    assert torch.equal(back.mask_logits, rounded.mask_logits) and torch.equal(back.mask_embed, rounded.mask_embed)
    import zarr

    assert zarr.open_group(str(tmp_path / "s.zarr"), mode="r")[f"images/{safe_name('y.png')}/mask_logits"].dtype == np.float16


def test_incomplete_groups_do_not_count_and_are_replaced(tmp_path):
    store = BatchStore.open_or_create(tmp_path / "s.zarr", header(), VOCAB, SETTINGS)
    store.write_image("z.png", "z.png", 0, (60, 90), encoded())
    folder = tmp_path / "s.zarr" / "images" / safe_name("z.png")
    attrs = json.loads((folder / ".zattrs").read_text())
    attrs.pop("complete")
    (folder / ".zattrs").write_text(json.dumps(attrs))  # as if the marker never got written
    assert not store.has_image("z.png") and store.keys() == []
    assert store.write_image("z.png", "z.png", 0, (60, 90), encoded())
    assert store.has_image("z.png")
    # leftovers of a killed writer live outside the hierarchy and are cleared on demand
    leftover = new_partial_folder(tmp_path / "s.zarr")
    (leftover / "junk").write_bytes(b"x")
    assert store.clear_partials() == 1 and not partial_root(tmp_path / "s.zarr").exists()


def test_a_store_refuses_results_made_differently(tmp_path):
    BatchStore.open_or_create(tmp_path / "s.zarr", header(), VOCAB, SETTINGS)
    other = Vocabulary.parse("car\nroad (stuff)")
    with pytest.raises(StoreError, match="labels"):
        BatchStore.open_or_create(tmp_path / "s.zarr", header(other), other, SETTINGS)
    changed = header()
    changed["encode_settings"] = {**changed["encode_settings"], "short_edge": 1024}
    with pytest.raises(StoreError, match="encode_settings"):
        BatchStore.open_or_create(tmp_path / "s.zarr", changed, VOCAB, SETTINGS)
    (tmp_path / "plain").mkdir()
    import zarr

    zarr.open_group(str(tmp_path / "plain"), mode="w")
    with pytest.raises(StoreError, match="not a napari-odise batch store"):
        BatchStore.open(tmp_path / "plain")


def test_labelsets_switch_atomically(tmp_path):
    store = BatchStore.open_or_create(tmp_path / "s.zarr", header(), VOCAB, SETTINGS)
    store.write_image("x.png", "x.png", 0, (60, 90), encoded())
    store.write_labels("x.png", result())
    other = Vocabulary.parse("cat\nsofa\ngrass (stuff)")
    new_id = labelset_id(other, SETTINGS)
    store.ensure_labelset(new_id, other, SETTINGS)
    store.write_labels("x.png", result(other), new_id)
    assert BatchStore.open(store.path).vocabulary == VOCAB  # not switched yet
    store.switch_labels(new_id)
    reopened = BatchStore.open(store.path)
    assert reopened.labels == new_id and reopened.vocabulary == other
    assert reopened.load_result("x.png").vocabulary == other
    assert reopened.drop_labelsets(keep=new_id) == [header()["labels"]]
    assert reopened.labelset_ids() == [new_id]
    assert sorted(os.listdir(store.path / "labels")) == [".zattrs", ".zgroup", new_id]
