"""Batch results into a COCO dataset folder through :mod:`napari_odise.io` (panoptic PNG + JSON,
instances, semantic PNGs, the images).

Results are exported in chunks (each chunk one io transaction, so the JSON files are rewritten
once per chunk rather than once per image) from the driver process only: the dataset's JSON
files are shared, so workers never touch them.

Image names in the dataset are the keys without their extension, folders joined by "__" and
pages as "_p3" (``sub/cat.jpg`` -> ``sub__cat``, ``stack.tif#p3`` -> ``stack_p3``). The source
file is copied as it is when it is an 8-bit RGB picture the model saw unchanged; anything else
(grayscale, 16-bit, RGBA, TIFF pages, EXIF-rotated photos) is stored as the RGB PNG the model saw.
An image counts as exported when the dataset's manifest lists its name with this source; a name
taken by another source (``cat.jpg`` and ``cat.png`` in one folder) is reported as a failure.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from napari_odise.batch.reading import PAGE_MARK, Item, read_item
from napari_odise.batch.summary import Failure
from napari_odise.image_input import to_rgb_uint8
from napari_odise.result import PanopticResult
from napari_odise.vocabulary import Vocabulary

CHUNK = 16
_COPYABLE = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def dataset_name(key: str) -> str:
    path, _, page = key.partition(PAGE_MARK)
    posix = PurePosixPath(path)
    stem = posix.with_suffix("").as_posix() if posix.suffix else posix.as_posix()
    return stem.replace("/", "__") + (f"_p{page}" if page else "")


def run_order(key: str) -> tuple[str, int]:
    """Where a key comes in a serial run: files sorted by key, a stack's pages in page order.
    Its images get their COCO ids in this order, which merging shards repeats."""
    file_key, _, page = key.partition(PAGE_MARK)
    return file_key, int(page) if page else -1


def source_id(item: Item) -> str:
    """What the dataset records as the image's source: the file, plus the page of a stack."""
    source = str(item.path.resolve())
    return f"{source}{PAGE_MARK}{item.page}" if item.key != item.file_key else source


def _copyable(item: Item) -> bool:
    """True when the file's own pixels are exactly what the model saw (no conversion at all)."""
    if item.key != item.file_key or item.path.suffix.lower() not in _COPYABLE:
        return False
    from napari_odise.pixel_budget import PixelBudgetError, open_with_pillow

    try:
        with open_with_pillow(item.path) as image:  # the header only, within the pixel budget
            orientation = image.getexif().get(0x0112, 1)
            return image.mode == "RGB" and orientation in (0, 1)
    except (OSError, PixelBudgetError):
        return False


class CocoOutput:
    def __init__(self, root: Path, vocabulary: Vocabulary, model: str):
        self.root = Path(root)
        self.vocabulary = vocabulary
        self.model = model
        self._buffer: list[tuple[Item, PanopticResult]] = []
        self._sources = self._committed_sources()

    def _committed_sources(self) -> dict[str, str | None]:
        from napari_odise.io.layout import DatasetLayout
        from napari_odise.io.manifest import read_manifest

        manifest = DatasetLayout(self.root).manifest
        if not manifest.is_file():
            return {}
        return {r["name"].lower(): r.get("source_image") for r in read_manifest(manifest)["images"]}

    def has(self, item: Item) -> bool:
        return self._sources.get(dataset_name(item.key).lower()) == source_id(item)

    def add(self, item: Item, result: PanopticResult) -> list[Failure]:
        """Queue one result; returns the failures of a chunk written now (usually none)."""
        self._buffer.append((item, result))
        return self.flush() if len(self._buffer) >= CHUNK else []

    def flush(self) -> list[Failure]:
        from napari_odise.io import DatasetError, export_results

        chunk, self._buffer = self._buffer, []
        if not chunk:
            return []
        failures = []
        ready = []
        for item, result in chunk:
            taken = self._sources.get(dataset_name(item.key).lower(), source_id(item))
            if taken != source_id(item):
                failures.append(Failure(item.key, f"COCO export: the name {dataset_name(item.key)!r} is taken by {taken}"))
            else:
                ready.append((item, result))
        try:
            self._export(ready, export_results)
        except DatasetError:  # find the culprit(s): one transaction per image
            for item, result in ready:
                try:
                    self._export([(item, result)], export_results)
                except DatasetError as error:
                    failures.append(Failure(item.key, f"COCO export: {error}"))
        return failures

    def _export(self, chunk, export_results) -> None:
        if not chunk:
            return
        images, results = [], []
        for item, result in chunk:
            if _copyable(item):
                images.append(item.path)
            else:
                images.append(to_rgb_uint8(read_item(item)))
            info = {**result.info, "model": self.model, "source_image": source_id(item)}
            results.append(PanopticResult(result.label_map, result.segments, result.vocabulary, None, result.query_ids, info))
        names = [dataset_name(item.key) for item, _ in chunk]
        export_results(results, self.root, images, names, references=results)  # the labels are the model's output
        for item, _ in chunk:
            self._sources[dataset_name(item.key).lower()] = source_id(item)

    def close(self) -> list[Failure]:
        return self.flush()
