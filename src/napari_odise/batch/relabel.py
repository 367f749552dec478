"""Re-labelling a whole store with a new vocabulary from its cached tensors: no backbone runs.

The new labels are written as a new labelset next to the current one (each image atomically,
so a killed run resumes where it stopped), and the store switches to it only when every image
has it; the old labelset is then deleted. Until the switch, readers keep seeing the old labels.
When the store sits in a batch output folder, that folder's per-image files and batch.json then
follow (:mod:`.relabel_files`), so a later ``segment`` run with the new vocabulary resumes it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from napari_odise.batch.job import BatchCancelled, describe
from napari_odise.batch.lock import folder_lock
from napari_odise.batch.models import ModelSpec, describe_model, load_predictor
from napari_odise.batch.relabel_files import follow_store
from napari_odise.batch.progress import BatchProgress, ProgressCallback
from napari_odise.batch.store import BatchStore, StoreError, labelset_id
from napari_odise.batch.summary import BatchSummary, Failure
from napari_odise.model.settings import InferenceSettings
from napari_odise.vocabulary import Vocabulary


def store_model_spec(store: BatchStore, device: str = "auto") -> ModelSpec:
    header = store.header
    return ModelSpec(header["model"], device, header["precision"])


def relabel_store(
    store_path: str | os.PathLike,
    vocabulary: Vocabulary,
    predictor=None,
    settings: dict | str | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> BatchSummary:
    """Give every image of the store labels under ``vocabulary``.

    ``settings`` changes classification settings (overlap_threshold, object_mask_threshold,
    alpha, beta), or names them ("evaluation", "demo" for the store's model); by default the
    store's are kept. ``predictor``: a loaded one (its weights must
    be the store's model), else the store's model is loaded on ``device``; only its text encoder
    and heads are used.
    """
    store = BatchStore.open(store_path)
    if store.header["embeddings"] == "none":
        raise StoreError(
            f"{store.path} was written with --embeddings none, so it has no tensors to re-label from; "
            "run segment again with another --out"
        )
    if isinstance(settings, str):
        variant = store_model_spec(store, device).variant
        settings = InferenceSettings.named(settings, variant).classify_part()
    unknown = set(settings or {}) - set(InferenceSettings.CLASSIFY)
    if unknown:
        raise StoreError(
            f"unknown classification settings: {sorted(unknown)}; use {', '.join(InferenceSettings.CLASSIFY)}"
        )
    classify = store.labelset()[1].replace(**(settings or {}))
    target = labelset_id(vocabulary, classify)
    summary = BatchSummary()
    started = time.perf_counter()
    with folder_lock(store.path.parent):
        store.clear_partials()
        store.ensure_labelset(target, vocabulary, classify)
        keys = store.keys()
        summary.total = len(keys)
        pending = []
        for key in keys:
            (summary.skipped if store.has_labels(key, target) else pending).append(key)
        if pending:
            if predictor is None:
                spec = store_model_spec(store, device)
                if progress is not None:
                    waiting = f"loading model {describe_model(spec)}"
                    progress(BatchProgress(0, 0, len(pending), len(summary.skipped), 0.0, waiting=waiting))
                predictor = load_predictor(spec)
            try:
                _relabel(store, pending, vocabulary, target, classify, predictor, summary, progress, cancel)
            except BatchCancelled:
                summary.cancelled = True
        if not summary.failed and not summary.cancelled:
            if store.labels != target:
                store.switch_labels(target)
            store.drop_labelsets(keep=target)
            summary.without_overlay = follow_store(store.path.parent, store)
        store.clear_partials()  # nothing is being written now: only leftovers (and the empty folder)
    summary.seconds = time.perf_counter() - started
    return summary


def _relabel(store, keys, vocabulary, target, settings, predictor, summary, progress, cancel) -> None:
    start = time.perf_counter()
    for done, key in enumerate(keys, 1):
        if cancel is not None and cancel.is_set():
            raise BatchCancelled()
        try:
            result = predictor.classify(store.load_encoded(key), vocabulary, settings=settings)
            store.write_labels(key, result, target)
            summary.done.append(key)
        except Exception as error:  # noqa: BLE001 - reported, the others go on
            summary.failed.append(Failure(key, describe(error)))
        if progress is not None:
            progress(BatchProgress(done, len(summary.failed), len(keys), len(summary.skipped), time.perf_counter() - start, key))


def store_path_of(path: str | os.PathLike) -> Path:
    """Accept a batch output folder as well as the store inside it."""
    from napari_odise.batch.job import STORE_NAME

    path = Path(path)
    return path / STORE_NAME if (path / STORE_NAME).is_dir() else path
