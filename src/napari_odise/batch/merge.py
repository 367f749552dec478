"""Joining the output folders of sharded runs (``--shard i/n``) into one.

Each source is a batch output folder. Their manifests must agree (same model, settings and
vocabulary), else nothing is written. Then, per image, store groups and per-image files are
copied atomically (an image already in the destination is left alone, so a killed merge resumes);
COCO datasets are joined by :func:`napari_odise.io.merge_datasets`; the shards' summaries are
combined into one ``batch_summary.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from napari_odise.batch.files import FOLDERS, WHOLE
from napari_odise.batch.job import STORE_NAME
from napari_odise.batch.lock import folder_lock
from napari_odise.batch.manifest import COMPARED, MANIFEST_NAME, check_or_write
from napari_odise.batch.store import BatchStore, header_differences
from napari_odise.batch.summary import SUMMARY_NAME, BatchSummary, Failure, count_images
from napari_odise.atomic import atomic_copy
from napari_odise.errors import UserError
from napari_odise.io.stable_json import read_json

COCO_NAME = "coco"


class MergeError(UserError, ValueError):
    """The sources cannot be merged (not batch outputs, or made differently)."""


@dataclass
class MergeSummary:
    images: int = 0  # distinct images in the merged store / files
    copied: int = 0  # copied by this call (the rest were there already)
    duplicates: list[str] = field(default_factory=list)  # keys found in more than one source
    batch: BatchSummary = field(default_factory=BatchSummary)

    def text(self) -> str:
        lines = [f"merged {count_images(self.images)} ({self.copied} copied now) from the shards"]
        if self.duplicates:
            lines.append(f"{count_images(len(self.duplicates))} in several shards: the first shard's copy was kept")
        if self.batch.failed:
            lines.append(f"{count_images(len(self.batch.failed))} failed in the shards:")
            lines += [f"  failed: {f.key}: {f.reason}" for f in self.batch.failed]
        return "\n".join(lines)


def _manifests(sources: Sequence[Path]) -> list[dict]:
    manifests = []
    for source in sources:
        path = source / MANIFEST_NAME
        if not path.is_file():
            raise MergeError(f"{source} is not a batch output folder (no {MANIFEST_NAME})")
        manifests.append(read_json(path))
    namings = {manifest.get("file_names", WHOLE) for manifest in manifests}
    if len(namings) > 1:
        raise MergeError(
            "the folders name their per-image files differently (written by different versions): "
            "run segment again into one of them with the others' inputs instead"
        )
    first = {k: manifests[0].get(k) for k in COMPARED}
    for source, manifest in zip(sources[1:], manifests[1:]):
        differences = header_differences(first, {k: manifest.get(k) for k in COMPARED})
        if differences:
            raise MergeError(f"{source} was made differently from {sources[0]}: {'; '.join(differences)}")
    return manifests


def merge_outputs(sources: Sequence[str | os.PathLike], out: str | os.PathLike) -> MergeSummary:
    sources = [Path(s).resolve() for s in sources]
    out = Path(out).resolve()
    if not sources:
        raise MergeError("name at least one shard output folder to merge")
    if out in sources:
        raise MergeError(f"the output folder {out} is also a source; merge into a new folder")
    manifests = _manifests(sources)
    summary = MergeSummary()
    with folder_lock(out):
        check_or_write(out, manifests[0])
        copied: set[str] = set()
        keys = _merge_stores(sources, out, summary, copied)
        keys |= _merge_files(sources, out, copied)
        summary.copied = len(copied)
        _merge_coco(sources, out, keys)
        summary.images = len(keys)
        summary.batch = _merge_summaries(sources, keys)
        summary.batch.write(out)
    return summary


def _merge_stores(sources: Sequence[Path], out: Path, summary: MergeSummary, copied: set[str]) -> set[str]:
    stores = [BatchStore.open(s / STORE_NAME) for s in sources if (s / STORE_NAME).is_dir()]
    if not stores:
        return set()
    first = stores[0]
    for store in stores[1:]:
        differences = header_differences(first.header, store.header)
        if differences:
            raise MergeError(f"{store.path} differs from {first.path}: {'; '.join(differences)}")
    vocabulary, settings = first.labelset()
    merged = BatchStore.open_or_create(out / STORE_NAME, first.header, vocabulary, settings)
    merged.clear_partials()
    seen: set[str] = set()
    for store in stores:
        for key in store.keys():
            if key in seen:
                summary.duplicates.append(key)
                continue
            seen.add(key)
            if merged.copy_image_from(store, key):
                copied.add(key)
    return seen


def _merge_files(sources: Sequence[Path], out: Path, copied: set[str]) -> set[str]:
    """Copy per-image files; the JSON of an image last, as in a batch run."""
    keys: set[str] = set()
    claimed: dict[str, Path] = {}
    for source in sources:
        for name in (*[f for f in FOLDERS if f != "segments"], "segments"):
            folder = source / name
            if not folder.is_dir():
                continue
            for root, dirs, files in os.walk(folder):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for file in sorted(f for f in files if not f.startswith(".")):
                    relative = (Path(root) / file).relative_to(source)
                    owner = claimed.setdefault(relative.as_posix(), source)
                    if owner != source:
                        continue
                    target = out / relative
                    fresh = not target.exists()
                    if fresh:
                        atomic_copy(Path(root) / file, target)
                    if name == "segments":
                        key = read_json(target)["image"]
                        keys.add(key)
                        if fresh:
                            copied.add(key)
    return keys


def _merge_coco(sources: Sequence[Path], out: Path, keys: set[str]) -> None:
    """Images go in in the order of a serial run (see :func:`~napari_odise.batch.coco.run_order`),
    so the merged dataset has that run's ids and bytes."""
    datasets = [s / COCO_NAME for s in sources if (s / COCO_NAME).is_dir()]
    if datasets:
        from napari_odise.batch.coco import dataset_name, run_order
        from napari_odise.io import merge_datasets
        from napari_odise.io.layout import DatasetLayout

        # Merging again (after a killed merge, or new shards) replaces the images already there
        # with the same content instead of refusing them.
        again = DatasetLayout(out / COCO_NAME).manifest.is_file()
        order = [dataset_name(key) for key in sorted(keys, key=run_order)]
        merge_datasets(datasets, out / COCO_NAME, overwrite=again, order=order)


def _merge_summaries(sources: Sequence[Path], present: set[str]) -> BatchSummary:
    merged = BatchSummary(done=sorted(present))
    failures: dict[str, str] = {}
    for source in sources:
        path = source / SUMMARY_NAME
        if not path.is_file():
            continue
        data = read_json(path)
        merged.seconds += float(data.get("seconds", 0.0))
        for failure in data.get("failed", []):
            if failure["key"] not in present:
                failures.setdefault(failure["key"], failure["reason"])
    merged.failed = [Failure(k, failures[k]) for k in sorted(failures)]
    merged.total = len(present) + len(merged.failed)
    return merged
