"""napari layer data <-> :class:`PanopticResult`, without importing napari.

A Labels layer carries a result as: ``data`` = the label map, ``features`` = ``result.features()``
(an ``index`` column of segment ids; napari shows the hovered row), and
``metadata["odise"] = {"vocabulary": <Vocabulary JSON text>, "info": {...}}``, ``info`` being
``result.info`` plus the typed fields under the keys ``image_name``, ``image_path``
(``result.source``) and ``model`` (``result.model``). These keys are shared by the reader, the
writer and the widgets.

Turning a layer back into a result trusts the features table for category, score and source,
and the label map for everything else: a segment whose pixel count no longer equals the
table's ``area`` was changed by painting and becomes ``source = "edited"``; ids painted that the
table does not know are unassigned (``category_id`` -1, edited); rows without pixels are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from napari_odise.io.errors import DatasetError
from napari_odise.result import (
    SOURCES,
    UNASSIGNED,
    ImageSource,
    PanopticResult,
    category_fields,
    segments_table,
)
from napari_odise.vocabulary import Vocabulary, VocabularyError

METADATA_KEY = "odise"
NAME_KEY, PATH_KEY, MODEL_KEY = "image_name", "image_path", "model"


def layer_metadata(result: PanopticResult) -> dict:
    info = dict(result.info)
    typed = ((NAME_KEY, result.source.name), (PATH_KEY, result.source.path), (MODEL_KEY, result.model))
    info.update((key, value) for key, value in typed if value is not None)
    return {METADATA_KEY: {"vocabulary": result.vocabulary.to_json(), "info": info}}


def labels_layer_data(result: PanopticResult, name: str) -> tuple:
    """A napari layer data tuple; ``colormap`` is the dict napari turns into a
    ``DirectLabelColormap`` (the caller may wrap it explicitly)."""
    kwargs = {
        "name": name,
        "features": result.features(),
        "colormap": result.colors(),
        "metadata": layer_metadata(result),
        "opacity": 0.6,
    }
    return (result.label_map, kwargs, "labels")


def vocabulary_from_metadata(metadata: Mapping | None) -> Vocabulary:
    odise = (metadata or {}).get(METADATA_KEY) or {}
    vocabulary = odise.get("vocabulary")
    if isinstance(vocabulary, Vocabulary):
        return vocabulary
    if isinstance(vocabulary, str):
        try:
            return Vocabulary.from_json(vocabulary)
        except VocabularyError as error:
            raise DatasetError(f"the layer's vocabulary is unreadable: {error}") from None
    raise DatasetError(
        f"the layer carries no napari-odise vocabulary (metadata['{METADATA_KEY}']"
        f"['vocabulary']): segment it with napari-odise or open it from a dataset first"
    )


def result_from_labels(data, features, metadata: Mapping | None) -> PanopticResult:
    """The result a Labels layer holds now (see the module notes)."""
    vocabulary = vocabulary_from_metadata(metadata)
    label_map = np.asarray(data)
    if label_map.ndim != 2:
        raise DatasetError(f"only 2-D label layers can be exported, this one is {label_map.ndim}-D")
    if not np.issubdtype(label_map.dtype, np.integer) or (label_map.size and label_map.min() < 0):
        raise DatasetError("label ids must be non-negative integers")
    label_map = label_map.astype(np.int32)
    table = _features_by_id(features)
    areas = np.bincount(label_map.ravel(), minlength=1)
    rows = []
    for segment_id in np.flatnonzero(areas[1:]) + 1:
        row = table.get(int(segment_id), {})
        category = _category(row, vocabulary, int(segment_id))
        source = row.get("source") if row.get("source") in SOURCES else "model"
        known_area = row.get("area")
        if not row or (known_area is not None and int(known_area) != int(areas[segment_id])):
            source = "edited"
        score = row.get("score")
        score = np.nan if score is None or _is_nan(score) else float(score)
        rows.append((int(segment_id), *category_fields(category), score,
                     int(areas[segment_id]), source))
    segments = segments_table(*zip(*rows)) if rows else segments_table()
    info = dict(((metadata or {}).get(METADATA_KEY) or {}).get("info") or {})
    source = ImageSource(info.pop(NAME_KEY, None), info.pop(PATH_KEY, None))
    model = info.pop(MODEL_KEY, None)
    return PanopticResult(label_map, segments, vocabulary, info=info, source=source, model=model)


def _features_by_id(features) -> dict[int, dict]:
    if features is None:
        return {}
    frame = pd.DataFrame(features)
    if frame.empty or "index" not in frame.columns:
        return {}
    records = frame.to_dict("records")
    return {int(r["index"]): r for r in records if int(r["index"]) > 0}


def _category(row: dict, vocabulary: Vocabulary, segment_id: int):
    """The row's category, by id (or by name when the table has no id); None = unassigned."""
    category_id = row.get("category_id")
    if category_id is not None and not _is_nan(category_id):
        if int(category_id) == UNASSIGNED:
            return None
        try:
            return vocabulary.by_id(int(category_id))
        except KeyError:
            raise DatasetError(
                f"segment {segment_id}: category_id {int(category_id)} is not in the layer's "
                f"vocabulary"
            ) from None
    name = row.get("category")
    if isinstance(name, str) and name in vocabulary:
        return vocabulary.by_name(name)
    return None


def _is_nan(value) -> bool:
    """Missing, whichever way pandas spells it (NaN, None, pd.NA)."""
    return value is None or bool(pd.isna(value))
