"""One image through the model and into the outputs: the unit of work of serial and dask runs.

A :class:`BatchJob` is the picklable description every worker gets (where to write, which
model and vocabulary); an :class:`ItemProcessor` does one item with a loaded predictor. Writes go
store tensors -> store labels -> per-image files, each atomic, so a run killed between two writes
resumes from what exists: labels missing but tensors stored means classify again (no backbone),
files missing but labels stored means only writing files.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from napari_odise.batch.files import SHORT, ImageFiles
from napari_odise.batch.models import ModelSpec
from napari_odise.batch.output_errors import is_write_failure
from napari_odise.batch.reading import Item, read_item
from napari_odise.batch.store import BatchStore, storage_roundtrip
from napari_odise.errors import Cancelled, UserError
from napari_odise.image_input import to_rgb_uint8
from napari_odise.model.settings import InferenceSettings
from napari_odise.result import PanopticResult
from napari_odise.vocabulary import Vocabulary

STORE_NAME = "store.zarr"


class BatchCancelled(Cancelled):
    """Raised inside a run when the user cancels; nothing of the current image is written."""


@dataclass(frozen=True)
class BatchJob:
    out: Path
    model: ModelSpec
    settings: InferenceSettings
    vocabulary_json: str
    labels: str  # the labelset id: vocabulary + classification settings
    store: bool = True
    files: bool = True
    coco: bool = False  # the driver writes a dataset: send each result back to it
    file_naming: str = SHORT  # per-image file names: short (cat.png) or whole (cat.jpg.png, older folders)
    whole_names: frozenset[str] = frozenset()  # file keys that keep the whole name (a.png next to a.jpg)

    def image_files(self) -> ImageFiles:
        return ImageFiles(self.out, self.file_naming, self.whole_names)

    @property
    def store_path(self) -> Path:
        return self.out / STORE_NAME

    @cached_property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary.from_json(self.vocabulary_json)


@dataclass
class Outcome:
    key: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0
    segments: int = 0  # how many segments the result kept (0: an empty labelling)
    result: PanopticResult | None = field(default=None, repr=False)  # for the COCO dataset only


def describe(error: BaseException) -> str:
    """A failure reason for the summary: a refusal's message says what and why; anything else
    keeps its type's name, so a bug does not read as a problem with the image."""
    if isinstance(error, UserError):
        return str(error)
    return f"{type(error).__name__}: {error}"


class ItemProcessor:
    def __init__(self, job: BatchJob, predictor):
        self.job = job
        self.predictor = predictor
        self.store = BatchStore.open(job.store_path) if job.store else None
        self.files = job.image_files() if job.files else None

    def process(self, item: Item, cancel=None) -> Outcome:
        """Segment one item and write its outputs; failures are returned, not raised."""
        start = time.perf_counter()
        try:
            result = self._process(item, cancel)
        except BatchCancelled:
            raise
        except Exception as error:  # noqa: BLE001 - one bad image must not stop the batch
            if is_write_failure(error):  # ... but a full or read-only disk stops it (the runner says why)
                raise
            return Outcome(item.key, False, describe(error), time.perf_counter() - start)
        labels = None
        if self.job.coco:  # without the tensors: they stay in the store, not in the message
            labels = dataclasses.replace(result, encoded=None)
        return Outcome(item.key, True, "", time.perf_counter() - start, len(result.segments), labels)

    def _process(self, item: Item, cancel) -> PanopticResult:
        rgb = to_rgb_uint8(read_item(item))
        store, key = self.store, item.key
        result = None
        if store is not None and store.has_image(key) and store.has_labels(key):
            result = store.load_result(key)
        if result is None:
            if store is not None and store.has_embeddings(key):
                encoded = store.load_encoded(key)
            else:
                encoded = self.predictor.encode(rgb, progress=_cancel_check(cancel), settings=self.job.settings)
                if store is not None:
                    encoded = storage_roundtrip(encoded, store.header["embeddings"])
            result = self.predictor.classify(encoded, self.job.vocabulary, settings=self.job.settings)
            if store is not None:
                if not store.has_image(key):
                    store.write_image(key, item.file_key, item.page, rgb.shape[:2], encoded)
                store.write_labels(key, result)
        if self.files is not None and not self.files.has(key):
            self.files.write(key, rgb, result, self.job.model.name, source=item, labels=self.job.labels)
        return result


def _cancel_check(cancel):
    """A predictor progress callback that stops the run mid-image once ``cancel`` is set."""
    if cancel is None:
        return None

    def check(stage, done, total):
        if cancel.is_set():
            raise BatchCancelled()

    return check
