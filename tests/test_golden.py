"""The tiny models compute today what they computed when the goldens were written (tests/data/golden).

tests/data/golden/make_golden.py wrote them and says when and why they last changed; a refactor
that changes no number passes. Labels, ids and areas must match exactly; floats to rtol 1e-5 so
another CPU passes too.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from napari_odise.vocabulary import Vocabulary

GOLDEN = Path(__file__).parent / "data" / "golden"
# The geometry the goldens were made with (conftest's FAST_GEOMETRY then); fixed here on purpose.
GOLDEN_GEOMETRY = {"short_edge": 128, "max_size": 320, "crop_size": 128}


# -- the only code that speaks the Predictor API --------------------------------------------------
@functools.cache
def _predictor(name: str):
    from napari_odise.predictor import Predictor

    return Predictor.from_pretrained(name, device="cpu")


def run_tiny(name: str, image: np.ndarray, settings_name: str):
    """(encoded image, (Q, K + 1) class log-probabilities, result) of one tiny-model run on COCO."""
    predictor = _predictor(name)
    settings = predictor.named_settings(settings_name, **GOLDEN_GEOMETRY)
    vocabulary = Vocabulary.preset("coco")
    encoded = predictor.encode(image, settings=settings)
    logprobs = predictor.model.classify(encoded, predictor.embed(vocabulary), settings)
    return encoded, logprobs, predictor.classify(encoded, vocabulary, settings=settings)


# --------------------------------------------------------------------------------------------------
IMAGES = {"astronaut": skimage.data.astronaut, "coffee": skimage.data.coffee}
RUNS = [
    ("tiny", "astronaut", "evaluation"),
    ("tiny", "coffee", "evaluation"),
    ("tiny-caption", "astronaut", "evaluation"),
    ("tiny-caption", "coffee", "evaluation"),
    ("tiny", "astronaut", "demo"),
]
EXACT = ("label_map", "segment_id", "segment_category_id", "segment_area")


def recorded_outputs(encoded, logprobs, result) -> dict[str, np.ndarray]:
    """The arrays make_golden.py stores, under the same names."""
    segments = result.segments
    outputs = {
        "mask_logits": encoded.mask_logits.float().numpy(),
        "mask_embed": encoded.mask_embed.float().numpy(),
        "clip_mask_embed": encoded.clip_mask_embed.float().numpy(),
        "logit_scale": np.float64(encoded.logit_scale),
        "clip_logit_scale": np.float64(encoded.clip_logit_scale),
        "class_logprobs": logprobs.float().numpy(),
        "label_map": np.asarray(result.label_map),
        "segment_id": segments["id"].to_numpy(np.int64),
        "segment_category_id": segments["category_id"].to_numpy(np.int64),
        "segment_score": segments["score"].to_numpy(np.float64),
        "segment_area": segments["area"].to_numpy(np.int64),
    }
    if encoded.class_logits is not None:
        outputs["class_logits"] = encoded.class_logits.float().numpy()
    return outputs


@pytest.mark.parametrize(("name", "image_name", "settings_name"), RUNS, ids=["__".join(run) for run in RUNS])
def test_tiny_outputs_match_the_goldens(name, image_name, settings_name):
    path = GOLDEN / f"{name}__{image_name}__{settings_name}.npz"
    with np.load(path) as stored:
        golden = dict(stored)
    actual = recorded_outputs(*run_tiny(name, IMAGES[image_name](), settings_name))

    assert sorted(actual) == sorted(golden)
    for key in EXACT:
        np.testing.assert_array_equal(actual[key], golden[key], err_msg=key)
    for key in sorted(set(golden) - set(EXACT)):
        assert np.shape(actual[key]) == golden[key].shape, key
        np.testing.assert_allclose(actual[key], golden[key], rtol=1e-5, atol=1e-6, err_msg=key)
    differing = [key for key in sorted(golden) if not np.array_equal(actual[key], golden[key])]
    if differing:
        print(f"{path.name}: within tolerance but not bit-identical: {', '.join(differing)}")


def test_the_goldens_hold_segments():
    """A comparison of empty tables proves little: the demo run keeps several segments."""
    with np.load(GOLDEN / "tiny__astronaut__demo.npz") as stored:
        assert len(stored["segment_id"]) >= 5
        assert stored["label_map"].shape == (512, 512)
        assert len(np.unique(stored["label_map"])) >= 5
