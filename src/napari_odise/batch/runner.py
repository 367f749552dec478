"""``run_batch``: a folder of images -> zarr store / per-image files / COCO dataset, resumable.

Steps: find the files (sorted, optionally one shard of them), split multi-page TIFFs into pages,
skip what an earlier run finished, segment the rest (in this process or on a Dask cluster), and
write ``batch_summary.json``. The model is loaded once (once per worker on a cluster).

Resuming is the normal case, not a special mode: running the same command again does only what
is missing, and what a killed run left half-written is removed first. An image counts as done
when every requested output has it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from napari_odise.batch.discovery import Discovered, DiscoveryError, discover, parse_shard, select_shard
from napari_odise.batch.files import FOLDERS, SHORT, WHOLE, ImageFiles, clashing_keys
from napari_odise.batch.job import STORE_NAME, BatchCancelled, BatchJob, ItemProcessor, Outcome
from napari_odise.batch.lock import folder_lock
from napari_odise.batch.manifest import MANIFEST_NAME, check, check_or_write
from napari_odise.batch.models import ModelSpec, describe_model, load_predictor
from napari_odise.batch.output_errors import OutputWriteError, writing_into
from napari_odise.batch.progress import BatchProgress, ProgressCallback
from napari_odise.batch.publish import partial_root
from napari_odise.batch.reading import ImageReadError, Item, expand
from napari_odise.batch.store import (
    EMBEDDING_DTYPES,
    STORE_FORMAT,
    BatchStore,
    StoreError,
    header_differences,
    labelset_id,
)
from napari_odise.batch.summary import BatchSummary, Failure
from napari_odise.atomic import remove_stale_temporaries
from napari_odise.errors import InvalidInputError
from napari_odise.io.stable_json import read_json
from napari_odise.model.settings import InferenceSettings
from napari_odise.vocabulary import Vocabulary


@dataclass
class BatchOptions:
    recursive: bool = False
    pattern: str | None = None  # glob on file names (or on relative paths when it has a "/")
    pages: str = "all"  # multi-page TIFFs: "all" pages as separate images, or the "first" only
    store: bool = True  # the zarr store (labels + tensors for re-labelling)
    files: bool | None = None  # per-image PNG/JSON/overlay; None: on unless ``coco``
    coco: bool = False  # a COCO dataset in <out>/coco (napari_odise.io)
    embeddings: str = "float32"  # store tensors as "float32" (exact), "float16" (half size), "none"
    shard: str | tuple[int, int] | None = None  # "i/n": only this shard of the files
    shard_by: str = "hash"
    scheduler: str | None = None  # None: this process; "local": a local Dask cluster; or an address
    workers: int | None = None  # local cluster size (default: one per GPU)

    @property
    def writes_files(self) -> bool:
        return self.files if self.files is not None else not self.coco


def _resolve_model(model) -> tuple[ModelSpec, object | None]:
    """(spec, predictor at hand or None) from a Predictor, a ModelSpec or a model name."""
    from napari_odise.predictor import Predictor

    if isinstance(model, Predictor):
        return ModelSpec(model.name, model.device.type, model.precision), model
    if isinstance(model, ModelSpec):
        return model, None
    return ModelSpec(str(model)), None


def plan_files(inputs: Sequence[str | os.PathLike], out: Path, options: BatchOptions):
    """(the files this run covers, after the glob and the shard, sorted by key; the file keys
    whose short output name another file shares, found before the shard so every shard agrees)."""
    files = discover(inputs, options.recursive, options.pattern, exclude=[out])
    if not files:
        where = ", ".join(str(p) for p in inputs)
        hint = " (add --recursive to look in sub-folders)" if not options.recursive else ""
        raise DiscoveryError(f"no images found in {where}{hint}")
    whole_names = clashing_keys(file.key for file in files)
    if options.shard is not None:
        index, count = parse_shard(options.shard) if isinstance(options.shard, str) else options.shard
        files = Discovered(select_shard(files, index, count, options.shard_by), files.skipped)
    return files, whole_names


def file_naming(out: Path) -> str:
    """How the folder names its per-image files: as its batch.json says (a folder from before the
    short names has none: whole names), or short names for a new folder."""
    path = out / MANIFEST_NAME
    if not path.is_file():
        return SHORT
    return read_json(path).get("file_names", WHOLE)


class _Tracker:
    """Turns outcomes into the summary, COCO records and progress events (driver side)."""

    def __init__(self, summary: BatchSummary, total: int, progress: ProgressCallback | None, coco):
        self.summary, self.total, self.progress, self.coco = summary, total, progress, coco
        self.start = time.perf_counter()
        self.finished = 0
        self.exporting: list[Item] = []  # done, handed to the dataset, maybe not written yet
        if progress is not None:
            progress(BatchProgress(0, 0, total, len(summary.skipped), 0.0))

    def record(self, item: Item, outcome: Outcome) -> None:
        if outcome.ok:
            self.summary.done.append(item.key)
            if not outcome.segments:
                self.summary.empty.append(item.key)
            if self.coco is not None and not self.coco.has(item):
                self.exporting.append(item)
                self.coco_failed(self.coco.add(item, outcome.result))
                self.exporting = [waiting for waiting in self.exporting if not self.coco.has(waiting)]
        else:
            self.summary.failed.append(Failure(item.key, outcome.reason))
        self.finished += 1
        if self.progress is not None:
            self.progress(
                BatchProgress(
                    self.finished,
                    len(self.summary.failed),
                    self.total,
                    len(self.summary.skipped),
                    time.perf_counter() - self.start,
                    item.key,
                )
            )

    def coco_failed(self, failures: list[Failure]) -> None:
        """Images segmented fine but refused by the dataset count as failed."""
        failed = {failure.key for failure in failures}
        self.exporting = [item for item in self.exporting if item.key not in failed]
        for failure in failures:
            if failure.key in self.summary.done:
                self.summary.done.remove(failure.key)
            self.summary.failed.append(failure)

    def not_exported(self) -> None:
        """The run stopped with images still waiting for the dataset: they are not done (a
        later run does them again)."""
        waiting = {item.key for item in self.exporting if not self.coco.has(item)}
        self.summary.done = [key for key in self.summary.done if key not in waiting]
        self.summary.empty = [key for key in self.summary.empty if key not in waiting]
        self.exporting = []

    def finish(self, out: Path, started: float) -> None:
        if self.coco is not None:
            self.coco_failed(self.coco.close())
        self.summary.seconds = time.perf_counter() - started
        self.summary.write(out)
        partial = partial_root(out / STORE_NAME)
        if partial.is_dir() and not any(partial.iterdir()):
            partial.rmdir()


def _clean_temporaries(out: Path) -> None:
    for name in FOLDERS:
        for root, _dirs, _files in os.walk(out / name):
            remove_stale_temporaries(root)
    remove_stale_temporaries(out)


def run_batch(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    vocabulary: Vocabulary,
    model="official",
    options: BatchOptions | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    settings: InferenceSettings | None = None,
) -> BatchSummary:
    """Segment every image of ``inputs`` into ``out``; see the module docstring and docs/batch.md.

    ``model``: a loaded Predictor (used as it is), a ModelSpec or a model name; ``settings``: how
    it runs (default: the model's evaluation settings), recorded in the outputs. ``cancel``: set it
    to stop after (or during) the current image; the summary says ``cancelled`` and a later run
    resumes.
    """
    options = options or BatchOptions()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if options.embeddings not in EMBEDDING_DTYPES:
        raise InvalidInputError(f"embeddings must be one of {EMBEDDING_DTYPES}, got {options.embeddings!r}")
    if not (options.store or options.writes_files or options.coco):
        raise InvalidInputError("nothing to write: enable the store, the per-image files or the COCO dataset")
    out = Path(out).resolve()
    spec, predictor = _resolve_model(model)
    if settings is None:
        settings = predictor.settings if predictor is not None else spec.settings()
    header = _header(spec, settings, options.embeddings, labelset_id(vocabulary, settings))
    naming = file_naming(out)
    manifest = {
        **header, "vocabulary": vocabulary.name, "classify_settings": settings.classify_part(), "file_names": naming,
    }
    files, whole_names = plan_files(inputs, out, options)
    job = BatchJob(
        out, spec, settings, vocabulary.to_json(), header["labels"], options.store, options.writes_files, options.coco,
        naming, whole_names,
    )
    summary = BatchSummary(
        shard=_shard_text(options.shard), ignored=[Failure(str(s.path), s.reason) for s in files.skipped]
    )
    started = time.perf_counter()
    with folder_lock(out):
        check(out, manifest)
        coco = _coco_output(out, vocabulary, spec) if options.coco else None
        pending = _pending_items(files, options, job, header, coco, summary)
        if pending and not options.scheduler and predictor is None:
            _announce_loading(progress, spec, len(pending), len(summary.skipped))
            predictor = load_predictor(spec)  # fails before anything is written
        tracker = None
        try:
            with writing_into(out):  # disk full, read-only: stop with a message, keep what is done
                check_or_write(out, manifest)
                if options.store:
                    store = BatchStore.open_or_create(job.store_path, header, vocabulary, settings)
                    summary.cleaned = store.clear_partials()
                _clean_temporaries(out)
                tracker = _Tracker(summary, len(pending), progress, coco)
                try:
                    if pending and options.scheduler:
                        from napari_odise.batch.distributed import run_distributed

                        run_distributed(pending, job, options.scheduler, options.workers, tracker.record, cancel)
                    elif pending:
                        _run_serial(pending, job, predictor, tracker.record, cancel)
                except (BatchCancelled, KeyboardInterrupt) as stop:
                    summary.cancelled = True
                    if isinstance(stop, KeyboardInterrupt):
                        tracker.finish(out, started)
                        raise
                tracker.finish(out, started)
        except OutputWriteError as error:
            _write_stopped_summary(summary, tracker, out, started, error)
            raise
    return summary


def _write_stopped_summary(summary: BatchSummary, tracker, out: Path, started: float, error: OutputWriteError) -> None:
    """Record why the run stopped and what it finished, when the folder still takes a small file."""
    summary.stopped = str(error)
    if tracker is not None and tracker.coco is not None:
        tracker.not_exported()
    summary.seconds = time.perf_counter() - started
    try:
        summary.write(out)
    except OSError:
        pass  # the folder takes nothing more: the message already says why


def _announce_loading(progress: ProgressCallback | None, spec: ModelSpec, total: int, skipped: int) -> None:
    """Tell the progress display that the model is loading (tens of seconds for the official one)."""
    if progress is not None:
        progress(BatchProgress(0, 0, total, skipped, 0.0, waiting=f"loading model {describe_model(spec)}"))


def _header(spec: ModelSpec, settings: InferenceSettings, embeddings: str, labels: str) -> dict:
    """What makes results comparable: the store's header and the folder manifest's core."""
    return {
        "format": STORE_FORMAT,
        "model": spec.name,
        "precision": spec.precision,
        "encode_settings": settings.encode_part(),
        "embeddings": embeddings,
        "labels": labels,
    }


def _shard_text(shard) -> str | None:
    return shard if shard is None or isinstance(shard, str) else "/".join(map(str, shard))


def _pending_items(files, options: BatchOptions, job: BatchJob, header: dict, coco, summary: BatchSummary) -> list[Item]:
    """Split files into items (TIFF pages); record unreadable files and finished items in the
    summary; return the rest, in order."""
    store = _existing_store(job.store_path, header) if options.store else None
    files_out = job.image_files() if job.files else None
    pending = []
    for file in files:
        try:
            items = expand(file, options.pages)
        except ImageReadError as error:
            summary.failed.append(Failure(file.key, str(error)))
            continue
        for item in items:
            if _is_done(item, options.store, store, files_out, coco):
                summary.skipped.append(item.key)
            else:
                pending.append(item)
    summary.total = len(pending) + len(summary.skipped) + len(summary.failed)
    return pending


def _is_done(item: Item, want_store: bool, store: BatchStore | None, files: ImageFiles | None, coco) -> bool:
    """Whether every requested output already has the item."""
    if want_store and not (store is not None and store.has_image(item.key) and store.has_labels(item.key)):
        return False
    if files is not None and not files.has(item.key):
        return False
    return coco is None or coco.has(item)


def _existing_store(path: Path, header: dict) -> BatchStore | None:
    """The store if there is one (refused if made differently); creating it waits until the
    model has loaded, so a model that cannot load leaves no trace."""
    if not path.exists():
        return None
    store = BatchStore.open(path)
    differences = header_differences(header, store.header)
    if differences:
        raise StoreError(f"{path} holds results made differently ({'; '.join(differences)})")
    return store


def _run_serial(pending: Sequence[Item], job: BatchJob, predictor, record, cancel) -> None:
    processor = ItemProcessor(job, predictor)
    for item in pending:
        if cancel is not None and cancel.is_set():
            raise BatchCancelled()
        record(item, processor.process(item, cancel))


def _coco_output(out: Path, vocabulary: Vocabulary, spec: ModelSpec):
    from napari_odise.batch.coco import CocoOutput

    return CocoOutput(out / "coco", vocabulary, spec.name)
