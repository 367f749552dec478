"""Merging datasets, e.g. the shards of a parallel batch run, with the export rules
(:mod:`~napari_odise.io.export`): ids continue, names must be new, vocabularies must agree.
Everything is checked before anything is written; images then go in chunks of
:data:`MERGE_CHUNK` so memory stays bounded however large the sources are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from napari_odise.io.categories import merge_vocabulary
from napari_odise.io.contents import DatasetContents
from napari_odise.io.dataset import Dataset, open_dataset
from napari_odise.io.errors import DatasetError
from napari_odise.io.export import ExportItem, ExportRecord, already_there, write_items

MERGE_CHUNK = 64  # images per transaction


def merge_datasets(
    sources: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    order: Sequence[str] | None = None,
) -> list[ExportRecord]:
    """Append the images of several datasets (e.g. shards of a batch run) to ``out``.

    Same rules as exporting; each image keeps its per-image choice of instances/semantic and its
    provenance. Names repeated across sources are refused (with ``overwrite``, the last wins).
    New images get ids in source order, or in ``order`` (image names; names it lacks come after,
    in source order): the order of one serial run, so shards merged get that run's ids.
    """
    out = Path(out)
    datasets = [open_dataset(source) for source in sources]
    for dataset in datasets:
        if out.exists() and dataset.root.resolve() == out.resolve():
            raise DatasetError(f"cannot merge {dataset.root} into itself")
        if dataset.missing_files:
            raise DatasetError(
                f"{dataset.root} is incomplete: {'; '.join(dataset.missing_files[:5])}"
            )
    chosen = _merge_choice(datasets, overwrite)
    if order is not None:
        position = {name: index for index, name in enumerate(order)}
        chosen.sort(key=lambda pair: position.get(pair[1], len(position)))
    existing = DatasetContents.load(out)
    vocabulary = existing.vocabulary
    for dataset in datasets:
        vocabulary = merge_vocabulary(vocabulary, dataset.vocabulary)
    if not overwrite:
        clashes = sorted(set(existing.records) & {name for _, name in chosen})
        if clashes:
            raise DatasetError(already_there(clashes, out))
    qualities = {  # each image's quality block goes with it
        id(dataset): {r["name"]: r.get("quality") for r in dataset.manifest["images"]} for dataset in datasets
    }
    records: list[ExportRecord] = []
    for start in range(0, len(chosen), MERGE_CHUNK):
        items = []
        for dataset, name in chosen[start : start + MERGE_CHUNK]:
            entry = dataset.image(name)
            items.append(
                ExportItem(
                    result=dataset.read(name), image=entry.image, name=name,
                    instances=entry.instances, semantic=entry.semantic is not None, skipped=(),
                    provenance={"source_image": entry.source_image, "model": entry.model},
                    quality=qualities[id(dataset)].get(name),
                )
            )
        records.extend(write_items(out, items, overwrite))
    return records


def _merge_choice(datasets: list[Dataset], overwrite: bool) -> list[tuple[Dataset, str]]:
    """(dataset, name) pairs to copy, in source order; repeated names refused or last wins."""
    last: dict[str, tuple[Dataset, str]] = {}
    for dataset in datasets:
        for name in dataset.names:
            key = name.lower()
            if key in last and not overwrite:
                raise DatasetError(
                    f"image {name!r} is in both {last[key][0].root} and {dataset.root}: rename "
                    f"one, or pass overwrite=True to keep the later one"
                )
            last[key] = (dataset, name)
    keep: dict[int, set[str]] = {id(d): set() for d in datasets}
    for dataset, name in last.values():
        keep[id(dataset)].add(name)
    return [(d, n) for d in datasets for n in d.names if n in keep[id(d)]]
