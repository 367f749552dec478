"""precision="bf16" stores the weights in bfloat16 (not only autocast), keeps in float32 what must
stay so, agrees with float32 within stated tolerances, and leaves a float32 model untouched."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from conftest import fast_tiny
from napari_odise.model.precision import half_modules
from napari_odise.predictor import Predictor
from napari_odise.vocabulary import Vocabulary

# Measured on the tiny random model (benchmarks/bench_precision.py prints the same numbers for
# four images): mask logits up to 0.15 of their largest value, class probabilities up to 0.04,
# 95-100% equal panoptic pixels. Random tiny weights are harder on bf16 than trained ones.
MASK_LOGITS_REL = 0.25
PROBABILITIES_ABS = 0.08
EQUAL_PIXELS = 0.90


@pytest.fixture(scope="module")
def coffee():
    return skimage.data.coffee()


@pytest.fixture(scope="module")
def runs(coffee):
    """(predictor, encoded, class probabilities, result) for fp32 and bf16, same random weights."""
    vocabulary = Vocabulary.preset("coco")
    out = {}
    for precision in ("fp32", "bf16"):
        predictor = Predictor(fast_tiny(), device="cpu", precision=precision)
        encoded = predictor.encode(coffee)
        probs = predictor.model.classify(encoded, predictor.embed(vocabulary), predictor.settings).exp()
        out[precision] = predictor, encoded, probs, predictor.classify(encoded, vocabulary)
    return out


def test_bf16_weights_really_are_bf16(runs):
    model = runs["bf16"][0].model
    for module in half_modules(model):
        dtypes = {p.dtype for p in module.parameters()} | {b.dtype for b in module.buffers() if b.is_floating_point()}
        assert dtypes == {torch.bfloat16}, (type(module).__name__, dtypes)
    # float32 on purpose: the class-score maths, the schedule's noise, the empty-caption context
    assert {p.dtype for p in model.category_head.parameters()} == {torch.float32}
    assert model.features.noise.dtype == torch.float32 and model.empty_context.dtype == torch.float32
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    fp32_weights = sum(p.numel() * p.element_size() for p in runs["fp32"][0].model.parameters())
    assert weights < 0.52 * fp32_weights


def test_bf16_outputs_agree_with_fp32(runs):
    _, enc32, probs32, result32 = runs["fp32"]
    _, enc16, probs16, result16 = runs["bf16"]
    for tensor in (enc16.mask_logits, enc16.mask_embed, enc16.clip_mask_embed):
        assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all()
    rel = (enc16.mask_logits - enc32.mask_logits).abs().max() / enc32.mask_logits.abs().max()
    assert 0 < rel <= MASK_LOGITS_REL  # not equal: the weights really are rounded
    assert (probs16 - probs32).abs().max() <= PROBABILITIES_ABS
    assert np.mean(result16.label_map == result32.label_map) >= EQUAL_PIXELS
    result16.validate()


def test_fp32_leaves_the_model_untouched():
    model = fast_tiny()
    before = {k: (v.data_ptr(), v.dtype) for k, v in model.state_dict().items()}
    cache = model.text_cache
    predictor = Predictor(model, device="cpu", precision="fp32")
    assert {k: (v.data_ptr(), v.dtype) for k, v in predictor.model.state_dict().items()} == before
    assert predictor.model.text_cache is cache


def test_tiny_loads_in_bf16_with_the_fp32_values_rounded():
    bf16 = Predictor.from_pretrained("tiny", device="cpu", precision="bf16").model
    fp32 = Predictor.from_pretrained("tiny", device="cpu").model
    a, b = bf16.state_dict(), fp32.state_dict()
    assert a.keys() == b.keys()
    for key in b:
        expected = b[key].to(a[key].dtype)
        assert torch.equal(a[key], expected), key
    assert a["features.unet.conv_in.weight"].dtype == torch.bfloat16


def test_a_changed_dtype_empties_the_text_cache():
    model = fast_tiny()
    model.embed_vocabulary([["cat"]], [True], [True])
    assert len(model.text_cache) == 2
    Predictor(model, device="cpu", precision="bf16")
    assert len(model.text_cache) == 0  # fp32 embeddings are not served to the bf16 CLIP


def test_cache_reads_straight_into_a_dtype(tmp_path):
    from napari_odise.weights.cache import read_cache, write_cache

    state = {"w": torch.randn(3, 5), "b": torch.randn(7), "steps": torch.arange(4), "empty": torch.zeros(0)}
    path = write_cache(state, tmp_path / "x-0123456789abcdef-original.safetensors", source_sha256="0123456789abcdef")
    read = read_cache(path, source_sha256="0123456789abcdef", dtype=torch.bfloat16)
    assert read.keys() == state.keys()
    for key, value in state.items():
        expected = value.to(torch.bfloat16) if value.is_floating_point() else value
        assert read[key].dtype == expected.dtype and torch.equal(read[key], expected), key


def test_text_store_is_per_dtype():
    from napari_odise.weights.text_store import store_path

    digest = "ab" * 32
    assert store_path(digest) == store_path(digest, torch.float32)
    assert store_path(digest, torch.bfloat16).name == f"clip-{digest[:16]}-bfloat16.sqlite"
