"""napari reader: COCO panoptic / instances JSON files -> an Image and a Labels layer per image.

The Labels layers carry the segments table as ``features`` (napari shows the hovered segment's
category and score), the category colours as a ``DirectLabelColormap`` and the vocabulary in
``metadata["odise"]`` (see :mod:`napari_odise.io.layers`), so what is opened can be corrected and
saved back with the napari-odise writer. The image layer comes when the image file is found next
to the annotations (``DATASET/images/``, or COCO's ``val2017/`` beside ``annotations/``).
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

from napari_odise.io.coco_instances import is_instances_json, read_instances
from napari_odise.io.coco_panoptic import PanopticReader, is_panoptic_json
from napari_odise.io.images import read_image
from napari_odise.io.layers import labels_layer_data
from napari_odise.io.stable_json import read_json

# Opening thousands of layers at once makes napari unusable: beyond this, the first ones open
# and a warning says how to reach the others.
MAX_IMAGES = 32


def get_reader(path):
    """The reader function for a COCO panoptic or instances JSON, else None."""
    if isinstance(path, list) or not str(path).lower().endswith(".json"):
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    if is_panoptic_json(data):
        return partial(read_coco_panoptic, data=data)
    if is_instances_json(data):
        return read_coco_instances
    return None


def read_coco_panoptic(path, data: dict | None = None) -> list[tuple]:
    reader = PanopticReader(path, data=data)
    images = _limited(reader.images(), path)
    return _layers([reader.read(image) for image in images], "panoptic")


def read_coco_instances(path) -> list[tuple]:
    return _layers(_limited(read_instances(path), path), "instances")


def _limited(items: list, path) -> list:
    if len(items) > MAX_IMAGES:
        warnings.warn(
            f"{Path(path).name} has {len(items)} images: opening the first {MAX_IMAGES}. Open "
            f"others with napari_odise.io.read_panoptic(path, image_name=...)",
            stacklevel=3,
        )
    return items[:MAX_IMAGES]


def _layers(results, kind: str) -> list[tuple]:
    from napari.utils.colormaps import DirectLabelColormap

    layers = []
    for result in results:
        name = result.source.name
        if result.source.path:
            pixels = read_image(result.source.path)
            # Say it: napari's guess fails for small images.
            rgb = pixels.ndim == 3 and pixels.shape[-1] in (3, 4)
            layers.append((pixels, {"name": name, "rgb": rgb}, "image"))
        data, kwargs, layer_type = labels_layer_data(result, f"{name} {kind}")
        kwargs["colormap"] = DirectLabelColormap(color_dict=kwargs["colormap"])
        layers.append((data, kwargs, layer_type))
    return layers
