"""CLIP text embeddings: cut padding (same numbers as the padded run), and the on-disk store that
makes a vocabulary cost nothing after a restart, shared safely by several processes."""

import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import fast_tiny
from napari_odise.model import clip_encoder
from napari_odise.model.text_embeddings import PHOTO_PROMPT, TextEmbeddingCache
from napari_odise.vocabulary import Vocabulary
from napari_odise.weights.text_store import TextEmbeddingStore, store_path


@pytest.fixture(scope="module")
def clip():
    return fast_tiny().clip


def coco_strings():
    raw = [s for group in Vocabulary.preset("coco").synonym_lists() for s in group]
    return raw + [PHOTO_PROMPT.format(s) for s in raw]


def test_cut_padding_gives_the_padded_embeddings(clip, monkeypatch):
    texts = coco_strings()
    with torch.no_grad():
        padded = clip.encode_text(clip_encoder.tokenize(texts, clip.context_length)).float()
    lengths = []
    original = clip_encoder.encode_tokens
    monkeypatch.setattr(clip_encoder, "encode_tokens", lambda c, t: lengths.append(t.shape[1]) or original(c, t))
    cut = clip_encoder.text_embeddings(clip, texts, batch_size=64)
    torch.testing.assert_close(cut, padded, rtol=1e-5, atol=1e-5)
    assert max(lengths) < 20 < clip.context_length  # COCO's longest prompt is a few words
    assert lengths == sorted(lengths)  # batches of similar lengths
    reversed_order = clip_encoder.text_embeddings(clip, texts[::-1], batch_size=64)
    torch.testing.assert_close(reversed_order, cut.flip(0), rtol=1e-5, atol=1e-5)  # rows follow the input


def test_store_round_trip_and_a_second_start_embeds_nothing(clip, tmp_path):
    texts = coco_strings()[:40]
    first = TextEmbeddingCache(TextEmbeddingStore(tmp_path / "clip.sqlite"))
    expected = first.embed(clip, texts)
    assert first.encoded_strings == 40
    restarted = TextEmbeddingCache(TextEmbeddingStore(tmp_path / "clip.sqlite"))  # a new process, say
    again = restarted.embed(clip, texts + ["a photo of a zebra crossing."])
    assert restarted.encoded_strings == 1
    assert torch.equal(again[:40], expected)  # float32 bytes, exactly


def test_store_is_bounded_keeping_the_recently_used(tmp_path):
    store = TextEmbeddingStore(tmp_path / "small.sqlite", limit_mb=1)
    vector = torch.ones(1024)  # 4 KiB each: 1 MiB holds 256
    store.put_many({f"older {i}": vector for i in range(150)})
    time.sleep(0.01)
    store.put_many({f"old {i}": vector for i in range(100)})
    time.sleep(0.01)
    store.get_many(["older 0"])  # used again: it counts as recent
    time.sleep(0.01)
    store.put_many({f"new {i}": vector for i in range(100)})  # 350 entries: over the bound
    assert len(store) == 256
    kept = store.get_many([*(f"new {i}" for i in range(100)), *(f"old {i}" for i in range(100)), "older 0"])
    assert len(kept) == 201  # the least recently used went first
    assert len(store.get_many([f"older {i}" for i in range(1, 150)])) == 55


def test_two_processes_write_one_store_without_losing_entries(tmp_path):
    path = tmp_path / "shared.sqlite"
    writer = textwrap.dedent(
        f"""
        import sys, torch
        from napari_odise.weights.text_store import TextEmbeddingStore
        store = TextEmbeddingStore({str(path)!r})
        tag = sys.argv[1]
        for round in range(20):
            store.put_many({{f"{{tag}} {{round}} {{i}}": torch.full((64,), float(round)) for i in range(10)}})
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", writer, tag]) for tag in ("a", "b")]
    assert [p.wait(120) for p in processes] == [0, 0]
    store = TextEmbeddingStore(path)
    assert len(store) == 400
    assert torch.equal(store.get_many(["b 19 9"])["b 19 9"], torch.full((64,), 19.0))


def test_clear_cache_removes_the_store(clip):
    from napari_odise.weights.cache import clear_cache

    store = TextEmbeddingStore.for_clip("ab" * 32)
    store.put_many({"cat": torch.zeros(4)})
    store.close()
    assert store_path("ab" * 32).is_file()
    removed = clear_cache()
    assert store_path("ab" * 32) in removed and not store_path("ab" * 32).exists()


def test_vocab_warm_command_embeds_and_refuses_unknown_presets_before_loading(tmp_path):
    import os

    env = {**os.environ, "NAPARI_ODISE_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "napari_odise.cli", "vocab", "warm"]
    done = subprocess.run([*command, "coco", "pascal-voc", "--model", "tiny", "--device", "cpu", "-q"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "coco: 133 categories, 508 new strings embedded" in done.stdout
    assert "pascal-voc: 21 categories" in done.stdout  # strings shared with COCO are not embedded twice
    assert "no on-disk text-embedding store" in done.stderr  # said honestly for random weights
    refused = subprocess.run([*command, "cocoa", "--model", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 2 and "unknown preset 'cocoa'" in refused.stderr
    assert "loading model" not in refused.stderr  # refused before the model loads
