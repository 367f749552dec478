"""Predictor: predict/reclassify equivalence without backbone work, settings, OOM fallback."""

import dataclasses

import numpy as np
import pytest
import skimage.data
import torch

from conftest import fast_tiny
from napari_odise import PanopticResult, Predictor, Vocabulary
from napari_odise.errors import UserError
from napari_odise.model import postprocess


@pytest.fixture(scope="module")
def predictor():
    return Predictor(fast_tiny(), device="cpu")


@pytest.fixture(scope="module")
def coffee():
    return skimage.data.coffee()  # 400 x 600


def assert_same_result(a: PanopticResult, b: PanopticResult):
    np.testing.assert_array_equal(a.label_map, b.label_map)
    assert a.segments.to_dict("records") == b.segments.to_dict("records")
    assert a.vocabulary == b.vocabulary


def test_predict_returns_a_consistent_result(predictor, coffee):
    vocab = Vocabulary.preset("coco")
    result = predictor.predict(coffee, vocab)
    result.validate()
    assert result.label_map.shape == coffee.shape[:2] and result.label_map.dtype == np.int32
    assert len(result.segments) >= 1
    assert set(result.segments["id"]) == set(np.unique(result.label_map)) - {0}
    assert set(result.segments["category_id"]) <= set(vocab.ids)
    assert result.model == "tiny"
    assert result.settings == predictor.settings  # what made it, as a typed record


def test_reclassify_same_vocabulary_equals_predict(predictor, coffee):
    vocab = Vocabulary.preset("coco")
    result = predictor.predict(coffee, vocab)
    calls = predictor.encode_calls
    again = predictor.reclassify(result, vocab)
    assert predictor.encode_calls == calls
    assert_same_result(again, result)


def test_reclassify_new_vocabulary_equals_fresh_predict_without_backbone(predictor, coffee, monkeypatch):
    coco, ade = Vocabulary.preset("coco"), Vocabulary.preset("ade20k")
    result = predictor.predict(coffee, coco)
    backbone_runs = []
    original = predictor.model.backbone_features
    monkeypatch.setattr(predictor.model, "backbone_features", lambda *a, **k: backbone_runs.append(1) or original(*a, **k))
    relabelled = predictor.reclassify(result, ade)
    assert backbone_runs == []
    fresh = predictor.predict(coffee, ade)
    assert backbone_runs == [1]
    assert_same_result(relabelled, fresh)
    custom = Vocabulary.parse("mug: cup, coffee cup\nsaucer\ntable (stuff)")
    assert_same_result(predictor.reclassify(result, custom), predictor.predict(coffee, custom))


def test_reclassify_reuses_full_size_masks(predictor, coffee, monkeypatch):
    result = predictor.predict(coffee, Vocabulary.preset("coco"))
    upsampled = []
    original = postprocess.upsample_masks
    monkeypatch.setattr(postprocess, "upsample_masks", lambda *a: upsampled.append(1) or original(*a))
    predictor.reclassify(result, Vocabulary.preset("pascal-voc"))
    assert upsampled == []


def test_mask_cache_streams_when_over_budget(coffee):
    model = fast_tiny(mask_cache_mb=0)
    predictor = Predictor(model, device="cpu")
    vocab = Vocabulary.preset("coco")
    result = predictor.predict(coffee, vocab)
    assert len(model.mask_cache) == 0
    reference = Predictor(fast_tiny(), device="cpu").predict(coffee, vocab)
    assert_same_result(result, reference)


def test_text_embeddings_are_cached_across_calls(predictor, coffee):
    vocab = Vocabulary.preset("pascal-voc")
    result = predictor.predict(coffee, vocab)
    encoded = predictor.model.text_cache.encoded_strings
    predictor.reclassify(result, vocab)
    predictor.reclassify(result, vocab.remove("cat"))
    assert predictor.model.text_cache.encoded_strings == encoded


def test_auto_device_is_the_gpu_when_there_is_one(monkeypatch):
    from napari_odise.predictor import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="no CUDA GPU; use device='cpu' or 'auto'"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_demo_and_evaluation_settings(predictor):
    demo = predictor.named_settings("demo")
    assert (demo.overlap_threshold, demo.alpha, demo.beta) == (0.0, 0.35, 0.65)
    evaluation = predictor.named_settings("evaluation")
    assert (evaluation.overlap_threshold, evaluation.alpha, evaluation.beta) == (0.8, 0.3, 0.7)
    assert demo.short_edge == evaluation.short_edge == predictor.settings.short_edge == 128  # the model's own
    with pytest.raises(UserError, match="unknown inference setting"):
        predictor.settings.replace(nonsense=1)
    with pytest.raises(UserError, match="between 0 and 1"):
        predictor.settings.replace(alpha=1.5)


def test_settings_are_per_call_and_the_model_keeps_none(predictor, coffee):
    vocab = Vocabulary.preset("coco")
    before = predictor.settings
    normal = predictor.predict(coffee, vocab)
    strict = predictor.classify(normal.encoded, vocab, settings=before.replace(object_mask_threshold=0.99))
    assert predictor.settings is before and predictor.model.config.inference is before
    assert (normal.label_map > 0).any() and not (strict.label_map > 0).any()  # no query is that sure
    assert len(strict.segments) == 0 and strict.settings.object_mask_threshold == 0.99
    with pytest.raises(dataclasses.FrozenInstanceError):
        predictor.settings.alpha = 0.5


def test_reclassify_uses_the_settings_the_result_was_made_with(predictor, coffee):
    """A result made with the demo settings re-labels with them, whatever ran since."""
    coco, ade = Vocabulary.preset("coco"), Vocabulary.preset("ade20k")
    demo_settings = predictor.named_settings("demo")
    demo = predictor.predict(coffee, coco, settings=demo_settings)
    expected = predictor.predict(coffee, ade, settings=demo_settings)
    predictor.predict(coffee, coco)  # the evaluation settings in between change nothing
    relabelled = predictor.reclassify(demo, ade)
    assert_same_result(relabelled, expected)
    assert relabelled.settings == demo_settings
    evaluation = predictor.classify(demo.encoded, ade)
    assert not np.array_equal(evaluation.label_map, expected.label_map)


def test_classify_records_the_resolution_the_image_was_encoded_with(predictor, coffee):
    encoded = predictor.encode(coffee, settings=predictor.settings.replace(short_edge=192))
    result = predictor.classify(encoded, Vocabulary.preset("coco"))  # default settings: short edge 128
    assert encoded.settings.short_edge == 192 and result.settings.short_edge == 192


def test_grayscale_uint16_and_rgba_inputs(predictor):
    gray16 = (skimage.data.camera().astype(np.uint16) * 200)[::4, ::4]
    result = predictor.predict(gray16, Vocabulary.preset("pascal-voc"))
    assert result.label_map.shape == gray16.shape
    rgba = np.dstack([skimage.data.coffee(), np.full((400, 600), 128, np.uint8)])
    a = predictor.predict(rgba, Vocabulary.preset("pascal-voc"))
    b = predictor.predict(skimage.data.coffee(), Vocabulary.preset("pascal-voc"))
    assert_same_result(a, b)


def test_refusals_say_what_to_do(predictor):
    vocab = Vocabulary.preset("coco")
    with pytest.raises(ValueError, match="empty"):
        predictor.predict(np.zeros((0, 10, 3), np.uint8), vocab)
    with pytest.raises(ValueError, match="at least"):
        predictor.predict(np.zeros((1, 1), np.uint8), vocab)
    with pytest.raises(ValueError, match="Choose one plane"):
        predictor.predict(np.zeros((2, 5, 64, 64), np.uint8), vocab)


def test_plane_of_a_stack(predictor):
    stack = np.stack([skimage.data.camera()[::4, ::4], skimage.data.camera()[::4, ::4][::-1]])
    vocab = Vocabulary.preset("pascal-voc")
    second = predictor.predict(stack, vocab, plane=1)
    assert_same_result(second, predictor.predict(stack[1], vocab))


def test_out_of_memory_falls_back_to_one_crop_at_a_time(predictor, coffee, monkeypatch):
    batch_sizes = []
    original = predictor.model.encode

    def encode(rgb, progress=None, settings=None):
        batch_sizes.append(settings.crop_batch_size)
        if len(batch_sizes) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(rgb, progress, settings)

    monkeypatch.setattr(predictor.model, "encode", encode)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    result = predictor.predict(coffee, Vocabulary.preset("coco"))
    assert batch_sizes == [4, 1]
    assert predictor.settings.crop_batch_size == 4 and result.settings.crop_batch_size == 4  # nothing changed
    assert len(result.segments) >= 1


def test_out_of_memory_twice_explains_the_options(predictor, coffee, monkeypatch):
    def encode(rgb, progress=None, settings=None):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(predictor.model, "encode", encode)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    from napari_odise.predictor import PredictorOutOfMemoryError

    with pytest.raises(PredictorOutOfMemoryError, match="short_edge=768.*device='cpu'"):
        predictor.predict(coffee, Vocabulary.preset("coco"))


def test_out_of_memory_while_classifying_keeps_the_encoded_image(predictor, coffee, monkeypatch):
    from napari_odise.predictor import PredictorOutOfMemoryError

    vocab = Vocabulary.preset("coco")
    result = predictor.predict(coffee, vocab)
    original = predictor.model.classify
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(
        predictor.model, "classify", lambda *a: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("simulated"))
    )
    with pytest.raises(PredictorOutOfMemoryError, match="133 categories.*smaller vocabulary"):
        predictor.reclassify(result, vocab)
    monkeypatch.setattr(predictor.model, "classify", original)
    assert_same_result(predictor.reclassify(result, vocab), result)  # nothing lost


def test_rescore_ranks_categories_for_a_mask(predictor, coffee):
    vocab = Vocabulary.preset("pascal-voc")
    mask = np.zeros(coffee.shape[:2], bool)
    mask[100:300, 200:400] = True
    scores = predictor.rescore(coffee, mask, vocab)
    assert set(scores) == set(vocab.ids)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="empty"):
        predictor.rescore(coffee, np.zeros_like(mask), vocab)


def test_progress_reports_stages(predictor, coffee):
    seen = []
    predictor.predict(coffee, Vocabulary.preset("coco"), progress=lambda stage, done, total: seen.append((stage, done, total)))
    stages = [s for s, _, _ in seen]
    assert stages[0] == "backbone" and "decoder" in stages and stages[-1] == "classify"
    backbone = [(d, t) for s, d, t in seen if s == "backbone"]
    assert backbone[-1][0] == backbone[-1][1]


def test_bf16_autocast_runs_on_cpu(coffee):
    predictor = Predictor(fast_tiny(), device="cpu", precision="bf16")
    result = predictor.predict(coffee, Vocabulary.preset("coco"))
    result.validate()
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        Predictor(fast_tiny(), device="cpu", precision="fp16")
