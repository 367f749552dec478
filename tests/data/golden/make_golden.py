"""Write the golden outputs that tests/test_golden.py compares the current code against.

The goldens pin what the tiny models (seeded random weights, as ``Predictor.from_pretrained``
builds them) compute. History:

* First written at commit 6585931, before inference settings became an immutable value passed as
  an argument; the settings refactor (commit 6dd9e10) reproduced them bit for bit.
* Re-written when CLIP's text tower stopped running the padding after each string's end-of-text
  token (``clip_encoder.text_embeddings``): text embeddings moved by at most 1.2e-6 (3.3e-6 at
  the official size), class log-probabilities by at most 2.4e-6, and one pixel of 262,144 in
  ``tiny__astronaut__evaluation`` changed sides at a near tie (its one segment: 212,429 -> 212,430
  pixels). Every other output, the label maps of the other runs, the ids and categories were equal.

Re-run from the repository root with the code whose numbers you mean to pin:

    .venv/bin/python tests/data/golden/make_golden.py

It writes one ``<model>__<image>__<settings>.npz`` per run next to this file (float32 tensors,
float64 scalars and scores, compressed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data

import napari_odise
from napari_odise.predictor import Predictor
from napari_odise.vocabulary import Vocabulary

HERE = Path(__file__).parent
GEOMETRY = {"short_edge": 128, "max_size": 320, "crop_size": 128}  # tests/conftest.py FAST_GEOMETRY
IMAGES = {"astronaut": skimage.data.astronaut, "coffee": skimage.data.coffee}
# (model, image, settings): evaluation settings everywhere, plus the demo settings once because
# evaluation thresholds may keep few segments of a random model.
RUNS = [
    ("tiny", "astronaut", "evaluation"),
    ("tiny", "coffee", "evaluation"),
    ("tiny-caption", "astronaut", "evaluation"),
    ("tiny-caption", "coffee", "evaluation"),
    ("tiny", "astronaut", "demo"),
]


def golden_path(model: str, image: str, settings: str) -> Path:
    return HERE / f"{model}__{image}__{settings}.npz"


def run(predictor: Predictor, image: np.ndarray, settings_name: str) -> dict[str, np.ndarray]:
    """Every recorded output of one run (tests/test_golden.py's run_tiny does the same)."""
    settings = predictor.named_settings(settings_name, **GEOMETRY)
    vocabulary = Vocabulary.preset("coco")
    encoded = predictor.encode(image, settings=settings)
    logprobs = predictor.model.classify(encoded, predictor.embed(vocabulary), settings)
    result = predictor.classify(encoded, vocabulary, settings=settings)
    return outputs_of(encoded, logprobs, result)


def outputs_of(encoded, logprobs, result) -> dict[str, np.ndarray]:
    """The arrays stored per run; shared in spirit with tests/test_golden.py, which rebuilds them."""
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


def main() -> None:
    print(f"napari_odise from {napari_odise.__file__}", file=sys.stderr)
    predictors = {}
    for model, image_name, settings in RUNS:
        if model not in predictors:
            predictors[model] = Predictor.from_pretrained(model, device="cpu")
        outputs = run(predictors[model], IMAGES[image_name](), settings)
        path = golden_path(model, image_name, settings)
        np.savez_compressed(path, **outputs)
        print(f"{path.name}: {len(outputs['segment_id'])} segments, {path.stat().st_size} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
