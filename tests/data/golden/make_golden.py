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

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/: the runs are test_golden's, so both stay one
from test_golden import GOLDEN, IMAGES, RUNS, recorded_outputs, run_tiny  # noqa: E402

import napari_odise  # noqa: E402


def main() -> None:
    print(f"napari_odise from {napari_odise.__file__}", file=sys.stderr)
    for model, image_name, settings in RUNS:
        outputs = recorded_outputs(*run_tiny(model, IMAGES[image_name](), settings))
        path = GOLDEN / f"{model}__{image_name}__{settings}.npz"
        np.savez_compressed(path, **outputs)
        print(f"{path.name}: {len(outputs['segment_id'])} segments, {path.stat().st_size} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
