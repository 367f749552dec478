"""A dataset folder for people: its summary as text, and one image's layers for review.

The layers are the reader's (``napari_odise._reader``), so an image reviewed from the Export
widget looks, hovers and saves exactly like one opened with File > Open.
"""

from __future__ import annotations

from napari_odise._reader import _layers as reader_layers
from napari_odise.io import Dataset

SHOWN_PROBLEMS = 5


def describe(dataset: Dataset) -> str:
    """Counts, edited share and problems (the first few) of ``dataset.summary()``."""
    summary = dataset.summary()
    lines = [
        f"{dataset.root.name}: {summary['images']} images, {summary['segments']} segments "
        f"({summary['edited_share']:.0%} edited, in {summary['images_with_edits']} images), "
        f"{summary['instances']} instances, {summary['categories']} categories"
    ]
    if summary["images_without_file"]:
        lines.append(f"{summary['images_without_file']} images have no image file (fine-tuning needs them)")
    if dataset.problems:
        lines.append(f"{len(dataset.problems)} problems:")
        lines += [f"  {problem}" for problem in dataset.problems[:SHOWN_PROBLEMS]]
    else:
        lines.append("no problems")
    return "\n".join(lines)


def review_layers(dataset: Dataset, name: str) -> list:
    """The image (when the dataset has its file) and labels layers of one dataset image."""
    from napari.layers import Layer

    return [Layer.create(*layer_data) for layer_data in reader_layers([dataset.read(name)], "panoptic")]
