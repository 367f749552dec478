"""The headless core users script against: one loaded model on one device.

    predictor = Predictor.from_pretrained("official", device="cuda")   # or "tiny"
    result = predictor.predict(image, Vocabulary.preset("coco"))       # PanopticResult
    result2 = predictor.reclassify(result, other_vocabulary)           # no backbone work

``predict`` = ``encode`` (the diffusion backbone and the mask decoder: seconds on a GPU) +
``reclassify`` (text embeddings, the CLIP ensemble and the panoptic merge: milliseconds). Results
keep the encoded per-query tensors, so a vocabulary change never runs the backbone again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from napari_odise.cpu_threads import use_physical_cores
from napari_odise.errors import UserError
from napari_odise.image_input import ImageInputError, to_rgb_uint8
from napari_odise.model.odise import ODISE, EncodedImage
from napari_odise.model.precision import DTYPES, to_precision
from napari_odise.model.settings import InferenceSettings
from napari_odise.models import ModelChoiceError
from napari_odise.result import PanopticResult
from napari_odise.review import category_margins
from napari_odise.vocabulary import Vocabulary, VocabularyError

log = logging.getLogger(__name__)

PRECISIONS = DTYPES  # "fp16"/"bf16": the weights are stored in that dtype (model/precision.py)
ProgressCallback = Callable[[str, int, int], None]


class PredictorOutOfMemoryError(UserError, RuntimeError):
    """The GPU ran out of memory even with crops one at a time; the message lists what to try."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ModelChoiceError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelChoiceError("device 'cuda' was asked for but PyTorch sees no CUDA GPU; use device='cpu' or 'auto'")
    return device


def _checked_choice(device: str | torch.device, precision: str) -> torch.device:
    if precision not in PRECISIONS:
        raise ModelChoiceError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = resolve_device(device)
    if precision == "fp16" and device.type != "cuda":
        raise ModelChoiceError("fp16 needs a CUDA GPU; on the CPU use fp32 (or bf16)")
    return device


class Predictor:
    """One loaded model on one device. Run-time options are a frozen :class:`InferenceSettings`
    passed to each call (default: the model's own, :attr:`settings`) and recorded on each result;
    the predictor itself holds none, so widgets, the batch runner and scripts can share it. Calls
    run one at a time (the backbone's feature taps are per model)."""

    def __init__(self, model: ODISE, device: str | torch.device = "auto", precision: str = "fp32", name: str | None = None):
        self.device = _checked_choice(device, precision)
        self.precision = precision
        if self.device.type == "cpu":
            use_physical_cores()  # torch's default may count hyper-threads or CPUs we may not use
        # in place, as .to(device) is: a half-precision predictor holds half-precision weights
        self.model = to_precision(model, PRECISIONS[precision]).to(self.device).eval()
        self.name = name or model.config.name
        self.encode_calls = 0  # how many times the backbone ran (tests and the UI count it)
        self._lock = threading.RLock()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = "official",
        device: str | torch.device = "auto",
        precision: str = "fp32",
        **load_options,
    ) -> "Predictor":
        """A predictor for "official", "official-caption", "tiny", "tiny-caption", or the path of
        an ODISE checkpoint in the official layout (the release's, a re-saved one, or a fine-tuned one).

        The official models need their weights (``napari-odise weights status`` says what is
        missing and where to put it); the tiny ones are random and need nothing.
        """
        from napari_odise.checkpoints.loading import load_model

        _checked_choice(device, precision)  # before minutes of loading
        load_options.setdefault("dtype", PRECISIONS[precision])  # no float32 copy on the way
        model = load_model(name_or_path, **load_options)
        return cls(model, device=device, precision=precision, name=str(name_or_path))

    # -- settings -----------------------------------------------------------------------------
    @property
    def settings(self) -> InferenceSettings:
        """The model's own settings (the evaluation settings of its variant): the default of every call."""
        return self.model.config.inference

    @property
    def variant(self) -> str:
        return self.model.config.variant

    def named_settings(self, name: str, **overrides) -> InferenceSettings:
        """"evaluation" or "demo" for this model's variant, over its resolution options."""
        return self.settings.with_name(name, self.variant).replace(**overrides)

    # -- inference ----------------------------------------------------------------------------
    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision])

    def encode(
        self,
        image,
        progress: ProgressCallback | None = None,
        contrast_limits=None,
        plane=None,
        settings: InferenceSettings | None = None,
    ) -> EncodedImage:
        """Run the backbone and the mask decoder once (the expensive, vocabulary-free part)."""
        settings = settings or self.settings
        rgb = to_rgb_uint8(image, contrast_limits=contrast_limits, plane=plane)
        with self._lock:
            self.encode_calls += 1
            try:
                with self._autocast():
                    return self.model.encode(rgb, progress, settings)
            except torch.cuda.OutOfMemoryError:
                return self._encode_low_memory(rgb, progress, settings)

    def _encode_low_memory(self, rgb: np.ndarray, progress, settings: InferenceSettings) -> EncodedImage:
        """The documented OOM fallback: free the cache, run crops one at a time, else explain.
        The result records the settings asked for: one crop at a time computes the same."""
        torch.cuda.empty_cache()
        log.warning("CUDA out of memory; retrying with one crop at a time")
        try:
            with self._autocast():
                encoded = self.model.encode(rgb, progress, settings.replace(crop_batch_size=1))
            return dataclasses.replace(encoded, settings=settings)
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            raise PredictorOutOfMemoryError(
                "the GPU ran out of memory even with one crop at a time. Try, in this order: "
                "precision='fp16' (or 'bf16'); a smaller test-time resize, e.g. "
                "settings=predictor.settings.replace(short_edge=768) (fewer crops, slightly coarser masks); closing other "
                "GPU programs; or device='cpu' (slow but always fits). Nothing was lost: the image and "
                "your labels are untouched."
            ) from error

    def predict(
        self,
        image,
        vocabulary: Vocabulary,
        progress: ProgressCallback | None = None,
        contrast_limits=None,
        plane: int | None = None,
        settings: InferenceSettings | None = None,
    ) -> PanopticResult:
        """Panoptic segmentation of one image with ``vocabulary``."""
        encoded = self.encode(image, progress, contrast_limits=contrast_limits, plane=plane, settings=settings)
        return self.classify(encoded, vocabulary, progress, settings)

    def classify(
        self,
        encoded: EncodedImage,
        vocabulary: Vocabulary,
        progress: ProgressCallback | None = None,
        settings: InferenceSettings | None = None,
    ) -> PanopticResult:
        """Class scores and the panoptic merge for already-encoded image tensors.

        The result records ``settings`` with the resolution options the image was encoded with."""
        settings = (settings or self.settings).replace(**encoded.settings.encode_part())
        if progress is not None:
            progress("classify", 0, 1)
        try:
            with self._lock:
                embedding = self.embed(vocabulary)
                logprobs = self.class_logprobs(encoded, vocabulary, settings)
                label_map, segments = self.model.panoptic(encoded, logprobs, embedding.isthing, settings)
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            raise PredictorOutOfMemoryError(
                f"the GPU ran out of memory classifying {len(vocabulary)} categories. Try a smaller "
                "vocabulary, closing other GPU programs, or device='cpu'. Nothing was lost: the "
                "encoded image is kept, so classifying again does not re-run the backbone."
            ) from error
        ids = vocabulary.ids
        margins = category_margins(logprobs, [s.queries for s in segments])  # for the review queue
        info = [
            {
                "id": s.id,
                "category_id": ids[s.category_index],
                "isthing": s.isthing,
                "score": s.score,
                "query_ids": list(s.queries),
                "margin": margin,
            }
            for s, margin in zip(segments, margins)
        ]
        result = PanopticResult.from_segments_info(
            label_map.numpy(),
            info,
            vocabulary,
            encoded=encoded,
            pixel_counts={s.id: s.area for s in segments},
            settings=settings,
            model=self.name,
        )
        if progress is not None:
            progress("classify", 1, 1)
        return result

    def class_logprobs(
        self, encoded: EncodedImage, vocabulary: Vocabulary, settings: InferenceSettings | None = None
    ) -> torch.Tensor:
        """(Q, K + 1) class log-probabilities of every query under ``vocabulary`` (last column:
        "no object"): what :meth:`classify` merges, for callers that rank the queries themselves
        (proposals at a click)."""
        settings = (settings or self.settings).replace(**encoded.settings.encode_part())
        with self._lock:
            return self.model.classify(encoded, self.embed(vocabulary), settings)

    def reclassify(self, result: PanopticResult, vocabulary: Vocabulary) -> PanopticResult:
        """The same image with another vocabulary, from the cached per-query tensors (no backbone).

        Thresholds and ensemble weights are those the result was made with (``result.settings``),
        so the answer equals ``predict`` with that vocabulary and those settings.
        """
        if result.encoded is None:
            raise UserError(
                "this result has no model tensors to reclassify (it was imported or edited from scratch); "
                "run predict on the image instead"
            )
        return self.classify(result.encoded, vocabulary, settings=result.settings)

    def warm(self, vocabulary: Vocabulary, progress: ProgressCallback | None = None, chunk: int = 64) -> int:
        """Embed a vocabulary ahead of use (into the on-disk store when the model has one), a chunk
        of categories at a time, reporting ("text", categories done, total); returns how many
        strings went through CLIP."""
        synonyms, isthing, seen = vocabulary.synonym_lists(), [c.isthing for c in vocabulary], vocabulary.seen_mask()
        before = self.model.text_cache.encoded_strings
        for start in range(0, len(synonyms), chunk):
            if progress is not None:
                progress("text", start, len(synonyms))
            part = slice(start, start + chunk)
            with self._lock:
                self.model.embed_vocabulary(synonyms[part], isthing[part], seen[part])
        if progress is not None:
            progress("text", len(synonyms), len(synonyms))
        return self.model.text_cache.encoded_strings - before

    def embed(self, vocabulary: Vocabulary):
        """Text embeddings of a vocabulary (cached by string across calls)."""
        if len(vocabulary) == 0:
            raise VocabularyError("the vocabulary is empty: add at least one category")
        return self.model.embed_vocabulary(
            vocabulary.synonym_lists(), [c.isthing for c in vocabulary], vocabulary.seen_mask()
        )

    @torch.no_grad()
    def rescore(self, image, mask: np.ndarray, vocabulary: Vocabulary, contrast_limits=None) -> dict[int, float]:
        """CLIP's probabilities (category id -> p) for an arbitrary mask, e.g. an edited segment.

        Uses ODISE's mask classifier (MaskCLIP) on the mask alone: the ODISE head only scores the
        masks it predicted itself.
        """
        from napari_odise.model import clip_encoder
        from napari_odise.model.ensemble import max_over_synonyms
        from napari_odise.model.heads import scaled_cosine

        rgb = to_rgb_uint8(image, contrast_limits=contrast_limits)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != rgb.shape[:2]:
            raise ImageInputError(f"mask shape {mask.shape} differs from the image's {rgb.shape[:2]}")
        if not mask.any():
            raise ImageInputError("the mask is empty: paint the segment first")
        image01 = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float().div(255)[None].to(self.device)
        logits = torch.from_numpy(np.where(mask, 20.0, -20.0).astype(np.float32))[None, None].to(self.device)
        clip = self.model.clip
        with self._lock, self._autocast():
            embed = clip_encoder.mask_embeddings(clip, image01, logits, self.model.config.clip)[0]
            vocab = self.embed(vocabulary)
        scores = max_over_synonyms(
            scaled_cosine(embed.float().cpu(), vocab.photo, clip_encoder.logit_scale(clip).float().cpu()), vocab.counts
        ).softmax(-1)[0]
        return dict(zip(vocabulary.ids, scores.tolist()))
