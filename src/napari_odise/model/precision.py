"""Real half precision: the weights stored in fp16/bf16, not only autocast over fp32 weights.

``precision="fp16"|"bf16"`` halves the memory of what is big and frozen (the SD UNet and VAE,
CLIP: 1.4 B values, 5.5 GB in fp32) and runs the trainable head (captioner, feature projections,
pixel decoder, mask decoder) in that dtype too. What stays float32, and why:

* the diffusion schedule (``DiffusionFeatureExtractor.noised`` mixes latent and noise in fp32) and
  the fixed noise tensor: the official coefficients 0.9995749 / 0.0291548 round in half precision;
* the empty-caption context (1x77x768), which fp16 visibly shifts;
* the category head (text projection, "no object" embedding) and everything after ``encode``:
  class scores, the ensemble and the mask post-processing run on float32 copies of the per-query
  tensors (milliseconds; benchmarks/bench_precision.py measures what half precision would change).

Ops that need the range of float32 (softmax, normalisations) still get it from autocast, which
the predictor keeps on; it never copies a weight that is already in the autocast dtype.
"""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def half_modules(model) -> list[torch.nn.Module]:
    """The modules whose weights a half-precision model stores in its dtype."""
    return [
        model.clip,
        model.features.unet,
        model.features.vae,
        model.captioner,
        model.backbone,
        model.pixel_decoder,
        model.decoder,
    ]


def weights_dtype(model) -> torch.dtype:
    """The dtype the model's big frozen weights are stored in."""
    return model.features.unet.conv_in.weight.dtype


def to_precision(model, dtype: torch.dtype):
    """Store ``model``'s weights in ``dtype`` (in place; float32 parts listed in the module doc stay).

    A float32 model asked for float32 is left exactly as it is; tensors already in ``dtype`` are
    not copied. When the big weights change dtype, the text-embedding cache is emptied and
    detached from its on-disk store: embeddings made by CLIP in another dtype must not mix with
    this one's (the loader attaches the store for the new dtype)."""
    before = weights_dtype(model)
    if before == dtype == torch.float32:
        return model
    for module in half_modules(model):
        torch.nn.Module.to(module, dtype)  # diffusers' own .to() only adds a warning about fp32 modules it has none of
    if before != dtype:
        from .text_embeddings import TextEmbeddingCache

        model.text_cache = TextEmbeddingCache()
    return model
