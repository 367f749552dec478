"""Exporting results into a dataset folder (see :mod:`~napari_odise.io.layout`), and merging
datasets, with one set of rules:

* Image ids and instance annotation ids continue after the largest the dataset has used.
* An image name already in the dataset is refused unless ``overwrite=True``; then the image is
  replaced in place and keeps its image id (and its instance annotation ids, as far as they go).
  With ``skip_unchanged=True`` an image the dataset already holds as given (same segments and
  pixels, same kinds written) is left out instead: re-running an append that was killed part way
  completes it (the CLI's ``export`` does this).
* The incoming vocabulary must agree with the dataset's (same id, same name and thing flag);
  categories the dataset lacks are added at the end of its vocabulary.
* Unassigned segments (category -1) are refused, naming the ids to assign, unless
  ``skip_unassigned=True``, which leaves their pixels void.
* Everything that can be checked is checked before the first byte is written; every file is
  written atomically, data files before the JSON files that point to them, the manifest last.

Merging datasets (:mod:`~napari_odise.io.merge`) goes through :func:`write_items` too.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_odise.atomic import atomic_copy, remove_stale_temporaries
from napari_odise.io.categories import merge_vocabulary
from napari_odise.io.coco_instances import instance_annotations
from napari_odise.io.coco_panoptic import (
    exported_label_map,
    panoptic_annotation,
    segments_info,
    unassigned_ids,
)
from napari_odise.io.contents import DatasetContents
from napari_odise.io.errors import DatasetError
from napari_odise.io.journal import Staging, roll_forward
from napari_odise.io.images import check_png_array, image_shape, write_png
from napari_odise.io.layout import PNG, DatasetLayout, check_image_name
from napari_odise.io.lock import dataset_lock
from napari_odise.io.manifest import now, record_path
from napari_odise.io.panoptic_png import MAX_SEGMENT_ID, read_panoptic_png, write_panoptic_png
from napari_odise.io.semantic import (
    semantic_dtype,
    semantic_indices,
    widen_semantic_png,
    write_semantic_png,
)
from napari_odise.quality import ModelOutput, compare_results
from napari_odise.result import PanopticResult
from napari_odise.vocabulary import Vocabulary

ImageInput = str | os.PathLike | np.ndarray | None  # a file to copy, pixels, or none


@dataclass(frozen=True)
class ExportRecord:
    """What one exported image became in the dataset (paths absolute)."""

    name: str
    image_id: int
    image: Path | None  # None: exported without an image file
    panoptic_png: Path
    semantic_png: Path | None
    instance_ids: tuple[int, ...]
    segments: int
    edited: int
    skipped: tuple[int, ...]  # unassigned segment ids left out
    replaced: bool


@dataclass
class ExportItem:
    """One image to write: a result, its image, its name and what to write for it."""

    result: PanopticResult
    image: ImageInput
    name: str
    instances: bool
    semantic: bool
    skipped: tuple[int, ...]
    provenance: dict
    quality: dict | None = None  # the manifest's quality block (napari_odise.quality), if known


@dataclass
class _Plan:
    item: ExportItem
    old: dict | None = None  # manifest record of the image being replaced
    old_annotation_ids: list[int] = field(default_factory=list)


# --- public entry points -----------------------------------------------------------------
def export_result(
    result: PanopticResult,
    dataset_dir: str | os.PathLike,
    image: ImageInput = None,
    image_name: str | None = None,
    *,
    instances: bool = True,
    semantic: bool = True,
    overwrite: bool = False,
    skip_unassigned: bool = False,
) -> ExportRecord:
    """Add one result (and its image) to the dataset at ``dataset_dir``, creating it if needed.

    ``image``: a path (copied as is), an array (written as PNG), or None: then the result's own
    image file, ``result.source.path``, if there is one (results read from a dataset have it),
    else no image file. ``image_name`` defaults to the image file's stem, then
    ``result.source.name``, then the stem of ``result.source.path``.
    """
    return export_results(
        [result], dataset_dir, [image], [image_name], instances=instances, semantic=semantic,
        overwrite=overwrite, skip_unassigned=skip_unassigned,
    )[0]


def export_results(
    results: Iterable[PanopticResult],
    dataset_dir: str | os.PathLike,
    images: Sequence[ImageInput] | None = None,
    image_names: Sequence[str | None] | None = None,
    *,
    instances: bool = True,
    semantic: bool = True,
    overwrite: bool = False,
    skip_unassigned: bool = False,
    skip_unchanged: bool = False,
    references: Sequence[ModelOutput | PanopticResult | None] | None = None,
) -> list[ExportRecord]:
    """Like :func:`export_result` for many images in one transaction (the JSON files are
    rewritten once, so prefer this for batches). All or nothing is validated up front.
    ``skip_unchanged``: images already in the dataset exactly as given are left out (no record)
    rather than refused. ``references``: per result, the model's own output for that image (or
    None): the manifest then records how far the result is from it (``quality``)."""
    results = list(results)
    images = _aligned(images, len(results), "images")
    image_names = _aligned(image_names, len(results), "image_names")
    references = _aligned(references, len(results), "references")
    items = [
        _make_item(result, image, name, instances, semantic, skip_unassigned, reference)
        for result, image, name, reference in zip(results, images, image_names, references)
    ]
    return write_items(Path(dataset_dir), items, overwrite, skip_unchanged)


# --- items -------------------------------------------------------------------------------
def _aligned(values, count: int, what: str) -> list:
    if values is None:
        return [None] * count
    values = list(values)
    if len(values) != count:
        raise DatasetError(f"{len(values)} {what} for {count} results")
    return values


def _make_item(result, image, image_name, instances, semantic, skip_unassigned, reference=None) -> ExportItem:
    if not isinstance(result, PanopticResult):
        raise TypeError(f"expected a PanopticResult, got {type(result).__name__}")
    given_path = image is not None and not isinstance(image, np.ndarray)
    if image is None:
        found = result.source.path
        image = found if found and Path(found).is_file() else None
    name = check_image_name(image_name or _default_name(image, result))
    skipped = tuple(unassigned_ids(result)) if skip_unassigned else ()
    quality = None if reference is None else compare_results(result, reference).to_json()
    return ExportItem(result, image, name, instances, semantic, skipped,
                 _provenance(result, image if given_path else None), quality)


def _default_name(image, result: PanopticResult) -> str:
    if image is not None and not isinstance(image, np.ndarray):
        return Path(image).stem
    if result.source.name:
        return result.source.name
    if result.source.path:
        return Path(result.source.path).stem
    raise DatasetError("the result does not say which image it belongs to: pass image_name")


def _provenance(result: PanopticResult, image_path) -> dict:
    """Where the annotations came from. Results read from a dataset carry its provenance
    (the dataset's own image copy is not the source); otherwise the image path given, else the
    batch runner's ``info["source_image"]`` (a file and page), else ``result.source.path``; the
    model is ``result.model`` (``info["model"]`` where a caller still puts it there)."""
    info = result.info
    if isinstance(info.get("provenance"), dict):
        source = info["provenance"].get("source_image")
        model = info["provenance"].get("model")
    else:
        source = str(Path(image_path).resolve()) if image_path is not None else None
        source = source or info.get("source_image") or result.source.path
        model = result.model or info.get("model")
    return {"source_image": None if source is None else str(source),
            "model": None if model is None else str(model)}


# --- the transaction ---------------------------------------------------------------------
def write_items(
    root: Path, items: list[ExportItem], overwrite: bool, skip_unchanged: bool = False
) -> list[ExportRecord]:
    if not items:
        return []
    root = Path(root).absolute()
    layout = DatasetLayout(root)
    with dataset_lock(layout.lock):
        roll_forward(root)  # a replacement committed before a kill
        for folder in (root, *layout.data_dirs):
            remove_stale_temporaries(folder)
        contents = DatasetContents.load(root)
        if skip_unchanged and not overwrite:
            items = [item for item in items if not _unchanged(contents, item)]
            if not items:
                return []
        plans, vocabulary = _plan(contents, items, overwrite)
        # Appends commit by writing the manifest last; replacements overwrite files the old
        # manifest names, so they are staged and committed by one journal write (io/journal.py).
        staging = Staging(root) if any(plan.old is not None for plan in plans) else None
        return _write(contents, plans, vocabulary, staging)


def _plan(contents: DatasetContents, items: list[ExportItem], overwrite: bool):
    problems: list[str] = []
    seen: dict[str, str] = {}
    for item in items:
        key = item.name.lower()
        if key in seen:
            problems.append(f"two images are named {item.name!r} (names ignore case)")
        seen[key] = item.name
    existing = {name.lower(): name for name in contents.records}
    taken = []
    for item in items:
        clash = existing.get(item.name.lower())
        if clash is not None and clash != item.name:
            problems.append(f"{item.name!r} differs only in case from {clash!r} in the dataset")
        elif clash is not None and not overwrite:
            taken.append(item.name)
    if taken:
        problems.append(already_there(taken, contents.layout.root))
    unassigned = [
        f"{item.name!r}: segments {ids[:20]}"
        for item in items
        if not item.skipped and (ids := unassigned_ids(item.result))
    ]
    if unassigned:
        problems.append(
            "unassigned segments have no category to export ("
            + "; ".join(unassigned[:10])
            + "): assign them a category first, or pass skip_unassigned=True to leave them out"
        )
    for item in items:
        problems.extend(_check_item(item))
    if problems:
        raise DatasetError("; ".join(problems))
    vocabulary = contents.vocabulary
    for item in items:
        vocabulary = merge_vocabulary(vocabulary, item.result.vocabulary)
    if any(item.semantic for item in items):
        semantic_dtype(vocabulary)  # refuses vocabularies no PNG can index
    plans = []
    for item in items:
        old = contents.records.get(item.name)
        old_ids = []
        if old is not None:
            old_ids = [a["id"] for a in contents.instance_annotations.get(old["image_id"], [])]
        plans.append(_Plan(item, old, old_ids))
    return plans, vocabulary


def _check_item(item: ExportItem) -> list[str]:
    result = item.result
    try:
        result.validate()
    except ValueError as error:
        return [f"{item.name!r}: {error}"]
    largest = int(result.label_map.max(initial=0))
    if largest > MAX_SEGMENT_ID:
        return [f"{item.name!r}: segment id {largest} is above {MAX_SEGMENT_ID}, the largest a "
                f"COCO panoptic PNG holds: renumber the segments"]
    shape = result.label_map.shape
    image = item.image
    try:
        if isinstance(image, np.ndarray):
            check_png_array(image)
            image_hw = image.shape[:2]
        elif image is not None:
            if not Path(image).is_file():
                return [f"{item.name!r}: image file {image} not found"]
            image_hw = image_shape(image)
        else:
            return []
    except ValueError as error:
        return [f"{item.name!r}: {error}"]
    if tuple(image_hw) != tuple(shape):
        return [f"{item.name!r}: image is {image_hw[1]}x{image_hw[0]} but the label map "
                f"{shape[1]}x{shape[0]}"]
    return []


def already_there(names: list[str], root: Path) -> str:
    return (
        f"images {names[:10]} are already in {root}: pass overwrite=True (on the command line "
        f"--overwrite) to replace them, or give the new ones other names"
    )


_COMPARED = ("id", "category_id", "area", "iscrowd", "source")


def _compared(segment: dict) -> dict:
    """A segments_info entry's fields that decide 'unchanged', with whether it counts as reviewed
    (a file written before the flag existed leaves it out)."""
    fields = {k: segment.get(k) for k in _COMPARED}
    fields["reviewed"] = bool(segment.get("reviewed")) or segment.get("source") == "edited"
    return fields


def _unchanged(contents: DatasetContents, item: ExportItem) -> bool:
    """True when the dataset holds this image under this name exactly as the item would write
    it (segments, panoptic pixels, instances and semantic chosen alike); scores are not compared."""
    record = contents.records.get(item.name)
    if record is None or bool(record["instances"]) != item.instances:
        return False
    if (record["semantic"] is not None) != item.semantic:
        return False
    annotation = contents.panoptic_annotations[int(record["image_id"])]
    stored = [_compared(s) for s in annotation["segments_info"]]
    given = [_compared(s) for s in segments_info(item.result, item.skipped)]
    if stored != given:
        return False
    label_map = exported_label_map(item.result, item.skipped)
    png = record_path(contents.layout.root, record, "panoptic")
    return np.array_equal(read_panoptic_png(png), label_map)


def _write(contents: DatasetContents, plans: list[_Plan], vocabulary: Vocabulary,
           staging: Staging | None):
    layout = contents.layout
    place = staging.place if staging is not None else _in_place
    earlier = [r for r in contents.records.values() if r["semantic"]]
    widen = contents.semantic_dtype == "uint8" and semantic_dtype(vocabulary) == "uint16"
    if vocabulary != contents.vocabulary or not layout.vocabulary.is_file():
        contents.vocabulary = vocabulary
        contents.write_vocabulary()
    for plan in plans:
        for key, value in plan.item.result.info.get("supercategories", {}).items():
            contents.supercategories.setdefault(int(key), str(value))
    exported, stale = [], []
    for plan in plans:
        record, paths = _write_one(contents, plan, vocabulary, place)
        exported.append(record)
        stale.extend(_stale_files(layout, plan.old, paths))
    if widen:  # before the legend says uint16
        for record in earlier:
            widen_semantic_png(record_path(layout.root, record, "semantic"))
    contents.write_annotations(place)
    for path in stale:  # no longer referenced once the manifest is committed
        if staging is not None:
            staging.remove_after_commit(path)
        else:
            path.unlink(missing_ok=True)
    if staging is not None:
        staging.commit()
    return exported


def _in_place(path: Path) -> Path:
    return path


def _write_one(contents: DatasetContents, plan: _Plan, vocabulary: Vocabulary, place):
    """Write one image's files (each at ``place(final path)``) and its entries in ``contents``."""
    layout, item = contents.layout, plan.item
    result = item.result
    image_id = int(plan.old["image_id"]) if plan.old else contents.next_image_id()
    contents.instance_images.pop(image_id, None)  # a replacement may come without instances
    contents.instance_annotations.pop(image_id, None)
    file_name, image_path = _write_image(layout, item, plan.old, place)
    png_name = layout.png_name(item.name)
    panoptic_path = layout.panoptic_dir / png_name
    write_panoptic_png(place(panoptic_path), exported_label_map(result, item.skipped))
    semantic_path = None
    if item.semantic:
        semantic_path = layout.semantic_dir / png_name
        write_semantic_png(place(semantic_path), semantic_indices(result, vocabulary, item.skipped))
    height, width = result.label_map.shape
    image_entry = {"id": image_id, "file_name": file_name, "height": height, "width": width}
    annotation = panoptic_annotation(result, image_id, png_name, item.skipped)
    contents.panoptic_images[image_id] = image_entry
    contents.panoptic_annotations[image_id] = annotation
    instance_ids: list[int] = []
    if item.instances:
        ids = itertools.chain(plan.old_annotation_ids, _fresh_ids(contents))
        instances = instance_annotations(result, image_id, ids)
        contents.instance_images[image_id] = dict(image_entry)
        contents.instance_annotations[image_id] = instances
        instance_ids = [a["id"] for a in instances]
    segments = annotation["segments_info"]
    edited = sum(1 for s in segments if s["source"] == "edited")
    contents.records[item.name] = {
        "name": item.name,
        "image_id": image_id,
        "file_name": file_name,
        "image": None if image_path is None else layout.relative(image_path),
        "panoptic": layout.relative(panoptic_path),
        "semantic": None if semantic_path is None else layout.relative(semantic_path),
        "instances": item.instances,
        "height": height,
        "width": width,
        "segments": len(segments),
        "edited": edited,
        "skipped_unassigned": len(item.skipped),
        "source_image": item.provenance["source_image"],
        "model": item.provenance["model"],
        "exported": now(),
        "quality": item.quality,
    }
    record = ExportRecord(
        name=item.name, image_id=image_id, image=image_path, panoptic_png=panoptic_path,
        semantic_png=semantic_path, instance_ids=tuple(instance_ids), segments=len(segments),
        edited=edited, skipped=tuple(item.skipped), replaced=plan.old is not None,
    )
    return record, {p for p in (image_path, panoptic_path, semantic_path) if p is not None}


def _fresh_ids(contents: DatasetContents) -> Iterator[int]:
    while True:
        yield contents.next_annotation_id()


def _write_image(layout: DatasetLayout, item: ExportItem, old: dict | None, place):
    """(COCO file_name, final image path or None)."""
    image = item.image
    if isinstance(image, np.ndarray):
        file_name = item.name + PNG
        target = layout.images_dir / file_name
        write_png(place(target), image)
        return file_name, target
    if image is not None:
        source = Path(image)
        file_name = item.name + source.suffix.lower()
        target = layout.images_dir / file_name
        if not (target.exists() and os.path.samefile(source, target)):
            atomic_copy(source, place(target))
        return file_name, target
    if old is not None and old.get("image"):
        return old["file_name"], record_path(layout.root, old, "image")
    known = item.result.info.get("file_name")
    return item.name + (Path(known).suffix.lower() if known else PNG), None


def _stale_files(layout: DatasetLayout, old: dict | None, kept: set[Path]) -> list[Path]:
    if old is None:
        return []
    paths = [record_path(layout.root, old, key) for key in ("image", "semantic", "panoptic")]
    return [p for p in paths if p is not None and p not in kept]
