"""Export and import of corrected annotations: COCO panoptic, COCO instances, semantic PNGs.

Headless (numpy, Pillow, pycocotools; no napari, no torch). The dataset folder layout is
described in :mod:`napari_odise.io.layout`, the rules for appending in
:mod:`napari_odise.io.export`, crash safety in :mod:`napari_odise.io.contents` and
:mod:`napari_odise.atomic`; ``docs/formats.md`` has the whole picture.
"""

from napari_odise.io.coco_instances import read_instances
from napari_odise.io.coco_panoptic import read_panoptic
from napari_odise.io.dataset import Dataset, ImageRecord, open_dataset
from napari_odise.io.errors import DatasetError
from napari_odise.io.export import ExportRecord, export_result, export_results
from napari_odise.io.merge import merge_datasets
from napari_odise.io.panoptic_png import ids_to_rgb, read_panoptic_png, rgb_to_ids
from napari_odise.io.semantic import read_semantic

__all__ = [
    "Dataset",
    "DatasetError",
    "ExportRecord",
    "ImageRecord",
    "export_result",
    "export_results",
    "ids_to_rgb",
    "merge_datasets",
    "open_dataset",
    "read_instances",
    "read_panoptic",
    "read_panoptic_png",
    "read_semantic",
    "rgb_to_ids",
]
