"""napari writer: Labels layers made by napari-odise (vocabulary in ``metadata["odise"]``) ->
a napari-odise dataset folder, the path given being the folder.

Saving replaces images of the same name already in the dataset (``overwrite=True``): that is
what saving corrections means. The image file comes from the layer's ``result.source.path``, else
from a selected Image layer of the same name as the image (or the only one), else the dataset
gets the annotations without an image file. Unassigned painted segments are refused with their
ids, so nothing a person painted is dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_odise.io.errors import DatasetError
from napari_odise.io.export import export_results
from napari_odise.io.layers import result_from_labels
from napari_odise.io.layout import DatasetLayout


class SaveError(RuntimeError):
    """Why saving failed. Not a ValueError on purpose: napari swallows ValueErrors from writers
    and reports only that the plugin "is not a valid writer", hiding the reason."""


def write_dataset(path: str, layer_data: list[tuple]) -> list[str]:
    try:
        return _write_dataset(path, layer_data)
    except DatasetError as error:
        raise SaveError(f"napari-odise could not save to {path}: {error}") from error


def _write_dataset(path: str, layer_data: list[tuple]) -> list[str]:
    images = {meta.get("name"): data for data, meta, kind in layer_data if kind == "image"}
    labels = [(data, meta) for data, meta, kind in layer_data if kind == "labels"]
    results, sources, names = [], [], []
    for data, meta in labels:
        result = result_from_labels(data, meta.get("features"), meta.get("metadata"))
        name = result.source.name or meta.get("name")
        image = None
        known = result.source.path
        if not (known and Path(known).is_file()):
            image = images.get(name)
            if image is None and len(images) == 1 and len(labels) == 1:
                image = next(iter(images.values()))
        results.append(result)
        sources.append(None if image is None else np.asarray(image))
        names.append(name)
    export_results(results, path, images=sources, image_names=names, overwrite=True)
    return [str(DatasetLayout(path).root)]
