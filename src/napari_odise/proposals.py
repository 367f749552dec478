"""The model's other answers at a pixel: every query mask that covers it, ranked, with its best
category under the current vocabulary, and the edit that puts the chosen one into the label map.

ODISE computes 100 query masks per image and the panoptic merge shows only some of them. Clicking
a pixel lists the queries the merge would consider there, by the merge's own quantities:

- a query *covers* a pixel where its sigmoid mask is >= 0.5 (the merge's own-mask rule);
- it is *listed* if the merge keeps it: its most probable class is not "no object" and that
  probability is above ``object_mask_threshold`` (``include_dropped`` lists the others too, with
  their best real category);
- it is *ranked* by class score x mask quality (Mask2Former's instance score): the class score is
  the merge's score (the query's best category probability), the mask quality the mean sigmoid
  inside the query's own mask; ties keep query order, as the merge does.

What does not depend on the vocabulary (each query's mask, area and quality) is computed once per
encoded image into a :class:`QueryMaskIndex` (packed bits inside each mask's bounding box: a
click reads a few bytes per query and upsamples nothing). Class probabilities are computed through
:meth:`Predictor.class_logprobs` and kept per vocabulary, so categories always follow the
vocabulary asked for. Results loaded from the batch store work the same way
(``BatchStore.load_result(key, with_encoded=True)``).

Building the index takes seconds on a large image: a GUI calls :func:`prepare` in a worker thread
and asks :func:`prepared` (which never waits) before listing on its own thread.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from napari_odise import refine
from napari_odise.errors import InvalidInputError, UserError
from napari_odise.result import PanopticResult
from napari_odise.vocabulary import Category, Vocabulary

_KEPT_INDEXES = 4  # mask indexes kept (most recent images); each is ~Q x H x W / 8 bytes at most
_KEPT_VOCABULARIES = 4  # class probabilities kept per image


class NoModelTensorsError(UserError):
    """The result has no model tensors (imported, or loaded without them): nothing to propose."""


@dataclass(frozen=True)
class Proposal:
    """One query's mask as a candidate segment."""

    query: int
    category: Category  # the query's most probable category in the vocabulary asked for
    score: float  # that category's probability (the panoptic merge's score)
    quality: float  # mean sigmoid inside the query's own mask (sigmoid >= 0.5)
    area: int  # pixels of that mask
    kept: bool  # the panoptic merge considers this query (its best class is not "no object")

    @property
    def rank(self) -> float:
        """What the list is ordered by: class score x mask quality."""
        return self.score * self.quality


class QueryMaskIndex:
    """Each query's own mask (sigmoid >= 0.5) at the image's size, as packed bits inside its
    bounding box (whole bytes across), with its area and mean sigmoid. Vocabulary independent:
    built once per image."""

    def __init__(self, shape: tuple[int, int], boxes: np.ndarray, bits: list[np.ndarray], areas, quality):
        self.shape = tuple(shape)
        self.boxes = boxes  # (Q, 4): y0, y1, x0, x1 (all 0 for an empty mask)
        self.bits = bits  # per query: rows y0:y1 of np.packbits(mask, axis=1), bytes x0 // 8 on
        self.areas = np.asarray(areas, dtype=np.int64)
        self.quality = np.asarray(quality, dtype=np.float64)

    @classmethod
    def from_probabilities(cls, shape: tuple[int, int], probabilities) -> QueryMaskIndex:
        """From (query, sigmoid mask) pairs in query order, e.g. ``QueryMasks.iter``."""
        boxes, bits, areas, quality = [], [], [], []
        for _, prob in probabilities:
            own = prob >= 0.5
            packed = np.packbits(own.numpy(), axis=1)
            area = int(np.bitwise_count(packed).sum(dtype=np.int64))
            # Mask2Former's mask score, as postprocess.instance_inference computes it
            quality.append(float((prob * own).sum() / (torch.tensor(area) + 1e-6)))
            areas.append(area)
            rows = np.flatnonzero(packed.any(axis=1))
            if area == 0:
                boxes.append((0, 0, 0, 0))
                bits.append(np.zeros((0, 0), np.uint8))
                continue
            y0, y1 = int(rows[0]), int(rows[-1]) + 1
            columns = np.flatnonzero(np.unpackbits(np.bitwise_or.reduce(packed[y0:y1], axis=0)))
            x0, x1 = int(columns[0]), int(columns[-1]) + 1
            boxes.append((y0, y1, x0, x1))
            bits.append(packed[y0:y1, x0 >> 3 : (x1 + 7) >> 3].copy())
        return cls(shape, np.asarray(boxes, dtype=np.int64).reshape(-1, 4), bits, areas, quality)

    @property
    def num_queries(self) -> int:
        return len(self.bits)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.bits)

    def covering(self, y: int, x: int) -> np.ndarray:
        """The queries whose mask holds pixel (y, x), in query order."""
        b = self.boxes
        inside = np.flatnonzero((b[:, 0] <= y) & (y < b[:, 1]) & (b[:, 2] <= x) & (x < b[:, 3]))
        hits = [
            q for q in inside.tolist()
            if (self.bits[q][y - b[q, 0], (x >> 3) - (b[q, 2] >> 3)] >> (7 - (x & 7))) & 1
        ]
        return np.asarray(hits, dtype=np.int64)

    def mask(self, query: int) -> np.ndarray:
        """The query's own mask, bool at the image's size."""
        out = np.zeros(self.shape, dtype=bool)
        y0, y1, x0, x1 = self.boxes[query].tolist()
        if y1 > y0:
            start = x0 & ~7  # the first byte's first pixel
            pixels = np.unpackbits(self.bits[query], axis=1, count=x1 - start).astype(bool)
            out[y0:y1, x0:x1] = pixels[:, x0 - start :]
        return out


@dataclass(frozen=True)
class _Classes:
    """Per query, under one vocabulary: best real category (position), its probability, and
    whether the panoptic merge keeps the query."""

    best: np.ndarray
    score: np.ndarray
    kept: np.ndarray


class _ImageCache:
    """What proposals need for one encoded image: its mask index and class probabilities per
    (model, vocabulary, classification settings)."""

    def __init__(self, index: QueryMaskIndex):
        self.index = index
        self.classes: OrderedDict = OrderedDict()


_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # EncodedImage -> _ImageCache
_cache_lock = threading.Lock()  # held only to read or update the caches, never while building
_build_lock = threading.Lock()  # one build at a time: a second caller waits for, then reuses, the first's


def mask_index(predictor, result: PanopticResult) -> QueryMaskIndex:
    """The result's :class:`QueryMaskIndex`, built on first use from the model's full-size masks
    (the same ones the panoptic merge reads: shared with the model's mask cache when they are
    in it) and kept while the encoded image lives (the most recent few)."""
    return _image_cache(predictor, result).index


def _image_cache(predictor, result: PanopticResult) -> _ImageCache:
    encoded = _encoded(result)
    with _cache_lock:
        entry = _cache.get(encoded)
        if entry is not None:
            _cache.pop(encoded)
            _cache[encoded] = entry  # most recently used last
            return entry
    with _build_lock:
        with _cache_lock:
            entry = _cache.get(encoded)  # built by another thread while this one waited
        if entry is not None:
            return entry
        masks = predictor.model.query_masks(encoded, _settings(predictor, result))
        index = QueryMaskIndex.from_probabilities(
            encoded.geometry.output_size, masks.iter(list(range(encoded.num_queries)))
        )
        entry = _ImageCache(index)
        with _cache_lock:
            _cache[encoded] = entry
            while len(_cache) > _KEPT_INDEXES:
                _cache.pop(next(iter(_cache)))
    return entry


def prepare(predictor, result: PanopticResult, vocabulary: Vocabulary | None = None) -> None:
    """Build what a click anywhere on ``result`` needs under ``vocabulary`` (default: the
    result's): the mask index and the queries' class probabilities. Seconds on a large image (and
    it waits for the predictor while the model runs elsewhere): call it off the GUI thread."""
    _classes(predictor, result, vocabulary if vocabulary is not None else result.vocabulary)


def prepared(predictor, result: PanopticResult, vocabulary: Vocabulary | None = None) -> bool:
    """Whether :func:`proposals_at` answers for ``result`` under ``vocabulary`` from what is built,
    with no model call: a GUI lists only then. Never waits for a build in progress."""
    if result.encoded is None:
        return True  # nothing to build: proposals_at says why at once
    vocabulary = vocabulary if vocabulary is not None else result.vocabulary
    with _cache_lock:
        entry = _cache.get(result.encoded)
        return entry is not None and _classes_key(predictor, result, vocabulary) in entry.classes


def _classes_key(predictor, result: PanopticResult, vocabulary: Vocabulary) -> tuple:
    settings = _settings(predictor, result)
    return (weakref.ref(predictor.model), vocabulary, tuple(sorted(settings.classify_part().items())))


def _encoded(result: PanopticResult):
    if result.encoded is None:
        raise NoModelTensorsError(
            "this segmentation has no model tensors (it was imported, or loaded without them): "
            "proposals need a result made by the model (Segment, or the batch store with its tensors)"
        )
    return result.encoded


def _settings(predictor, result: PanopticResult):
    return result.settings if result.settings is not None else predictor.settings


def _classes(predictor, result: PanopticResult, vocabulary: Vocabulary) -> _Classes:
    entry = _image_cache(predictor, result)
    settings = _settings(predictor, result)
    key = _classes_key(predictor, result, vocabulary)
    with _cache_lock:
        found = entry.classes.get(key)
    if found is not None:
        return found
    logprobs = predictor.class_logprobs(_encoded(result), vocabulary, settings)
    probs = logprobs.float().softmax(-1)  # as the panoptic merge turns them into scores
    merge_score, merge_label = probs.max(-1)
    no_object = probs.shape[-1] - 1
    score, best = probs[:, :no_object].max(-1)
    kept = (merge_label != no_object) & (merge_score > settings.object_mask_threshold)
    found = _Classes(best.numpy(), score.double().numpy(), kept.numpy())
    with _cache_lock:
        entry.classes[key] = found
        while len(entry.classes) > _KEPT_VOCABULARIES:
            entry.classes.popitem(last=False)
    return found


def proposals_at(
    predictor,
    result: PanopticResult,
    y: int,
    x: int,
    vocabulary: Vocabulary | None = None,
    include_dropped: bool = False,
) -> list[Proposal]:
    """The query masks covering pixel (y, x) of ``result``, best first (see the module docstring).

    ``vocabulary`` (default: the result's) names the categories; ``predictor`` is the model that
    encoded the image (its text encoder and heads classify the queries)."""
    vocabulary = vocabulary if vocabulary is not None else result.vocabulary
    index = mask_index(predictor, result)
    height, width = index.shape
    if not (0 <= y < height and 0 <= x < width):
        raise InvalidInputError(f"pixel ({y}, {x}) is outside the image ({height} x {width})")
    classes = _classes(predictor, result, vocabulary)
    queries = index.covering(int(y), int(x))
    if not include_dropped:
        queries = queries[classes.kept[queries]]
    found = [
        Proposal(
            query=q,
            category=vocabulary[int(classes.best[q])],
            score=float(classes.score[q]),
            quality=float(index.quality[q]),
            area=int(index.areas[q]),
            kept=bool(classes.kept[q]),
        )
        for q in queries.tolist()
    ]
    return sorted(found, key=lambda p: -p.rank)  # stable: query order on ties


def proposal_mask(predictor, result: PanopticResult, proposal: Proposal) -> np.ndarray:
    """The proposal's pixels (bool, the image's size)."""
    return mask_index(predictor, result).mask(proposal.query)


def accept(
    label_map: np.ndarray,
    segments: pd.DataFrame,
    mask: np.ndarray,
    category: Category,
    score: float,
    at: tuple[int, int],
    only_unlabeled: bool = False,
    vocabulary: Vocabulary | None = None,
) -> refine.Edit:
    """Replace the segment under ``at`` (y, x) with ``mask`` as a new segment of ``category``
    scored ``score``, an edit like those of :mod:`napari_odise.refine` (pure; the table follows).

    The segment under ``at`` gives up all its pixels (none when ``at`` is unlabeled); the new
    segment then takes every mask pixel, or with ``only_unlabeled`` only those that are unlabeled
    by then, so other segments keep theirs. Segments left without pixels lose their rows.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != label_map.shape:
        raise InvalidInputError(f"mask shape {mask.shape} differs from the label map's {label_map.shape}")
    y, x = (int(v) for v in at)
    new_map = label_map.copy()
    under = int(label_map[y, x])
    if under:
        new_map[label_map == under] = 0
    if only_unlabeled:
        mask = mask & (new_map == 0)
    if not mask.any():
        raise InvalidInputError("the proposal has no pixels left to take")
    new_id = refine.new_segment_id(label_map, segments)
    new_map[mask] = new_id
    new_map, table = refine.sync(new_map, segments, vocabulary, pending={new_id: category})
    table.loc[table["id"] == new_id, "score"] = float(score)
    return new_map, table
