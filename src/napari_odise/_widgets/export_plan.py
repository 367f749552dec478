"""What the Export widget writes for a Labels layer, and the checks that need the widget's words.

A 2-D layer is one dataset image; a stack gives one image per plane that has segments (named
``<name>-<plane index>``), since a plane nobody segmented is no annotation of "nothing here".
The results are the layer as File > Save reads it (:func:`napari_odise.io.layers.results_from_labels`
over the synced :class:`~.layer_state.SegmentationLayer`, what the Refine widget edits), so the
two give the same per-plane results. Unassigned segments and name clashes are
checked here too, before :func:`napari_odise.io.export_results` would refuse them, so the message
names the checkbox to tick rather than a keyword argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from napari_odise.errors import UserError
from napari_odise.io import Dataset, ExportRecord, export_results, open_dataset
from napari_odise.io.coco_panoptic import unassigned_ids
from napari_odise.io.layers import plane_references
from napari_odise.io.layout import DatasetLayout
from napari_odise.io.planes import plane_name
from napari_odise.result import PanopticResult

from .layer_state import SegmentationLayer
from .planes import PlaneKey, image_plane, labels_shape

# Image files copied as they are (the training loader reads them); other pixels become PNGs.
COPIED_SUFFIXES = (".png", ".jpg", ".jpeg")


class ExportProblem(UserError, ValueError):
    """Why nothing was exported, with what to do in the widget."""


@dataclass(frozen=True)
class ExportOptions:
    instances: bool = True
    semantic: bool = True
    overwrite: bool = False
    skip_unassigned: bool = False


@dataclass
class ExportPlan:
    results: list[PanopticResult]
    images: list  # per result: a file path, an array, or None (the file ``info`` names, if any)
    names: list[str]
    references: list = field(default_factory=list)  # per result: the model's output, or None


def plan_export(state: SegmentationLayer, image_layer, name: str) -> ExportPlan:
    """The images to write for a layer (main thread: reading the layer syncs its table)."""
    name = name.strip()
    if not name:
        raise ExportProblem("type the name the image gets in the dataset")
    data = state.layer.data
    if image_layer is not None and labels_shape(image_layer) != tuple(data.shape):
        raise ExportProblem(
            f"'{image_layer.name}' is {labels_shape(image_layer)} but the labels {tuple(data.shape)}: "
            f"choose the image they segment, or (none)"
        )
    results = state.results()
    if not results:
        raise ExportProblem(f"'{state.layer.name}' has no segments in any plane")
    plan = ExportPlan([], [], [])
    references = plane_references(results, state.layer.metadata)
    for key, result in results.items():
        plan.references.append(references.get(key))
        plan.results.append(result)
        plan.images.append(None if image_layer is None else image_source(image_layer, key))
        plan.names.append(plane_name(name, key))
    return plan


def image_source(image_layer, key: PlaneKey):
    """The image file the layer was opened from when it is one plain picture, else its pixels."""
    path = getattr(image_layer.source, "path", None)
    if not key and path and Path(path).suffix.lower() in COPIED_SUFFIXES and Path(path).is_file():
        return Path(path)
    return image_plane(image_layer, key)


def check_plan(plan: ExportPlan, folder: Path, options: ExportOptions) -> None:
    """Refuse, in the widget's terms, what the export would refuse."""
    if not options.skip_unassigned:
        unassigned = {n: ids for n, r in zip(plan.names, plan.results) if (ids := unassigned_ids(r))}
        if unassigned:
            listed = "; ".join(f"'{n}': segments {ids[:10]}" for n, ids in unassigned.items())
            raise ExportProblem(
                f"segments without a category ({listed}): give them one with Refine segments "
                f"(R), or tick 'Skip unassigned segments' to leave their pixels unlabeled"
            )
    if not options.overwrite and DatasetLayout(folder).manifest.is_file():
        present = {n.lower() for n in open_dataset(folder).names}
        taken = [n for n in plan.names if n.lower() in present]
        if taken:
            raise ExportProblem(
                f"{taken[:5]} already in {folder}: tick 'Overwrite' to replace, or change the name"
            )


def export_work(plan: ExportPlan, folder: Path, options: ExportOptions) -> Callable[[], tuple]:
    """The worker's part: check, write, re-open. Returns (records, the dataset as now written)."""

    def work() -> tuple[list[ExportRecord], Dataset]:
        check_plan(plan, folder, options)
        records = export_results(
            plan.results,
            folder,
            plan.images,
            plan.names,
            instances=options.instances,
            semantic=options.semantic,
            overwrite=options.overwrite,
            skip_unassigned=options.skip_unassigned,
            references=plan.references,
        )
        return records, open_dataset(folder)

    return work
