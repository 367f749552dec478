"""The Segment widget's "Prepare ticked presets" (the vocabulary box's warm action), opened from the
Plugins menu as users do, with the tiny model given an on-disk text-embedding store: the ticked
presets' strings land in the store with CLIP's embeddings, and Cancel stops it."""

import threading

import torch
from conftest import fast_tiny

from napari_odise import Predictor, Vocabulary
from napari_odise._widgets.session import Session
from napari_odise.model import clip_encoder
from napari_odise.model.text_embeddings import PHOTO_PROMPT
from napari_odise.models import ModelSpec
from napari_odise.weights.text_store import TextEmbeddingStore


def tiny_with_store(path):
    predictor = Predictor(fast_tiny(), device="cpu")
    predictor.model.text_cache.store = TextEmbeddingStore(path)  # as a model loaded from weight files has
    return predictor


def open_segment(viewer, predictor, presets):
    _, widget = viewer.window.add_plugin_dock_widget("napari-odise", "Segment")
    Session.of(viewer).pool.put(ModelSpec("tiny", "cpu"), predictor)
    widget.model_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    for name, box in widget.vocabulary_widget.preset_boxes.items():
        box.setChecked(name in presets)  # clicks, as a user ticks
    return widget


def strings_of(vocabulary):
    raw = [s for group in vocabulary.synonym_lists() for s in group]
    return raw + [PHOTO_PROMPT.format(s) for s in raw]


def test_prepare_ticked_presets_puts_their_embeddings_in_the_store(make_napari_viewer, qtbot, tmp_path):
    predictor = tiny_with_store(tmp_path / "text.sqlite")
    widget = open_segment(make_napari_viewer(), predictor, ["pascal-voc", "pascal-context-59"])
    warmer = widget.warmer
    assert warmer.isVisibleTo(widget.vocabulary_widget) and warmer.parent() is widget.vocabulary_widget

    warmer.warm_button.click()
    assert warmer.busy and not warmer.warm_button.isEnabled()
    qtbot.waitUntil(lambda: not warmer.busy, timeout=120_000)

    texts = list(dict.fromkeys(strings_of(Vocabulary.preset("pascal-voc")) + strings_of(Vocabulary.preset("pascal-context-59"))))
    stored = TextEmbeddingStore(tmp_path / "text.sqlite").get_many(texts)  # what another process finds
    assert set(stored) == set(texts)
    sample = texts[:: max(1, len(texts) // 12)]
    expected = clip_encoder.text_embeddings(predictor.model.clip, sample)
    torch.testing.assert_close(torch.stack([stored[t] for t in sample]), expected, rtol=1e-5, atol=1e-6)
    assert "coco" not in widget.session.vocabulary.presets  # only what was ticked
    assert not TextEmbeddingStore(tmp_path / "text.sqlite").get_many(["a photo of a giraffe."])
    context, voc = (set(strings_of(Vocabulary.preset(name))) for name in ("pascal-context-59", "pascal-voc"))
    assert warmer.progress_bar.value() == 1000  # ticked in the presets' order: context first
    assert warmer.status.text() == f"prepared: pascal-context-59 (+{len(context)} strings), pascal-voc (+{len(voc - context)} strings)"

    encoded = predictor.model.text_cache.encoded_strings
    warmer.warm_button.click()  # again: everything is there already
    qtbot.waitUntil(lambda: not warmer.busy, timeout=60_000)
    assert predictor.model.text_cache.encoded_strings == encoded
    assert "pascal-voc (+0 strings)" in warmer.status.text()


def test_cancel_stops_preparing_and_keeps_what_was_embedded(make_napari_viewer, qtbot, tmp_path):
    predictor = tiny_with_store(tmp_path / "text.sqlite")
    chunks, gate = [], threading.Event()
    embed = predictor.model.embed_vocabulary

    def second_chunk_waits(*args):  # holds the second chunk of categories until Cancel was clicked
        chunks.append(len(args[0]))
        if len(chunks) == 2:
            gate.wait(60)
        return embed(*args)

    predictor.model.embed_vocabulary = second_chunk_waits
    widget = open_segment(make_napari_viewer(), predictor, ["lvis"])  # 1203 categories: 19 chunks of 64
    warmer = widget.warmer
    warmer.warm_button.click()
    qtbot.waitUntil(lambda: warmer.status.text() == "lvis: 64/1203 categories", timeout=60_000)
    warmer.cancel_button.click()
    gate.set()
    qtbot.waitUntil(lambda: not warmer.busy and not warmer._job.running, timeout=60_000)
    assert warmer.status.text().startswith("cancelled")
    assert warmer.warm_button.isEnabled() and not warmer.cancel_button.isEnabled()
    assert chunks == [64, 64]  # stopped at the report after the chunk under way
    first_two = Vocabulary.preset("lvis").synonym_lists()[:128]
    raw = [s for group in first_two for s in group]
    assert len(TextEmbeddingStore(tmp_path / "text.sqlite")) == len(set(raw + [PHOTO_PROMPT.format(s) for s in raw]))
