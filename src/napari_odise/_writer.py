"""napari writer: Labels layers made by napari-odise (vocabulary in ``metadata["odise"]``) ->
a napari-odise dataset folder, the path given being the folder.

Layers are read by :func:`napari_odise.io.layers.results_from_labels`, as the Export widget
reads them: a 2-D layer is one dataset image named like its image (``source.name``: the
metadata's ``image_name``/``image``, else the layer's name); a stack is one image per plane that
has segments, named ``<name>-<plane>``. Saving replaces images of the same name already in the
dataset (``overwrite=True``): that is what saving corrections means. The image file is the
layer's own (``source.path``, 2-D layers only), else the pixels of a selected Image layer named
like the image (or the only one; a stack gives its planes), else the dataset gets the
annotations without an image file. Unassigned painted segments are refused with their ids, so
nothing a person painted is dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_odise.errors import UserError
from napari_odise.io.errors import DatasetError
from napari_odise.io.export import export_results
from napari_odise.io.layers import layer_source, plane_references, results_from_labels
from napari_odise.io.layout import DatasetLayout
from napari_odise.io.planes import plane_name


class SaveError(UserError, RuntimeError):
    """Why saving failed. Not a ValueError on purpose: napari swallows ValueErrors from writers
    and reports only that the plugin "is not a valid writer", hiding the reason."""


def write_dataset(path: str, layer_data: list[tuple]) -> list[str]:
    try:
        return _write_dataset(path, layer_data)
    except UserError as error:  # a refused export or vocabulary; a bug stays itself
        raise SaveError(f"napari-odise could not save to {path}: {error}") from error


def _write_dataset(path: str, layer_data: list[tuple]) -> list[str]:
    images = {meta.get("name"): data for data, meta, kind in layer_data if kind == "image"}
    labels = [(data, meta) for data, meta, kind in layer_data if kind == "labels"]
    results, sources, names, references = [], [], [], []
    for data, meta in labels:
        planes = results_from_labels(data, meta.get("features"), meta.get("metadata"))
        kept = plane_references(planes, meta.get("metadata"))  # the model's output, for quality
        if not planes:
            raise DatasetError(f"'{meta.get('name')}' has no segments in any plane")
        name = layer_source(meta.get("metadata")).name or meta.get("name")
        image = images.get(name)
        if image is None and len(images) == 1 and len(labels) == 1:
            image = next(iter(images.values()))
        for key, result in planes.items():
            known = result.source.path
            pixels = None
            if image is not None and not (known and Path(known).is_file()):
                pixels = np.asarray(image[key] if key else image)
            results.append(result)
            references.append(kept.get(key))
            sources.append(pixels)
            names.append(None if name is None else plane_name(name, key))
    export_results(results, path, images=sources, image_names=names, overwrite=True, references=references)
    return [str(DatasetLayout(path).root)]
