"""napari Labels layers <-> :class:`PanopticResult`: the one adapter, with one set of rules.

Used by the reader and File > Save (``_reader``, ``_writer``), by the Export widget and by the
widgets' layer state (which adopts layers the plugin did not make through it). napari is not
imported: a layer enters only as its ``data``, ``features`` and ``metadata``.

What a Labels layer holds
    ``data``: a label map, or a stack (..., H, W) of them, one per 2-D plane (see :mod:`.planes`).
    ``features``: one row per id, as :func:`~napari_odise.result.features_table` writes it: an
    ``index`` column of ids, then ``category``, ``category_id``, ``isthing``, ``score``, ``area``
    (pixels in the whole layer), ``source`` and ``reviewed``. ``metadata["odise"] = {"vocabulary": <Vocabulary
    JSON text>, "info": {...}}``: a result's ``info`` plus its typed fields under the keys
    ``image_name`` and ``image_path`` (``result.source``) and ``model`` (``result.model``). An
    ``image`` key is read as ``image_name`` (the Segment widget writes the image layer's name there).

Reading a layer
    - The features table says a segment's category (by ``category_id``, else by ``category`` name;
      an id the vocabulary lacks shows as unassigned), score and source; the pixels say the rest.
    - ``source`` is "model" only while the table says "model" and the pixel count equals the row's
      ``area`` (a table without ``area`` is taken at its word when read). Otherwise "edited":
      painted over, made by a person, or an id the table does not know (also unassigned).
    - A table without a ``source`` column gives "edited". The plugin always writes the column, so
      such a table was made elsewhere (by hand, by a script) and nothing vouches that the model
      made those segments; "edited" is also what keeps them, since a new model run or vocabulary
      change replaces only "model" segments (``_widgets/relabel``), and a dataset counts them as
      a person's work. (A COCO file without the key reads as "model": see :mod:`.coco_panoptic`.)
    - ``reviewed`` is true where the table says so (a table without the column: nobody has
      reviewed anything) and for every "edited" segment (a person changed it, so looked at it).
    - Rows without pixels are dropped.
    - A 2-D layer is one result; a stack is one result per plane that has segments (an empty
      plane is no annotation of "nothing here"), keyed by plane, named ``<name>-<plane>`` by
      :func:`~.planes.plane_name`. A plane has no image file of its own: its ``source.path`` is None.
    - A stack whose ``info`` has ``stack_links`` (linked: :mod:`napari_odise.stack_linking`) gives
      each plane ``info["track_ids"]`` ({id: track id}; a layer id is one object through the
      stack), which export writes as each segment's ``track_id``.

Making a layer
    A 2-D result keeps its ids (COCO -> layer -> COCO is lossless). A stack's planes are numbered
    1, 2, ... in plane order, each plane's segments in its id order, so ids are unique in the layer
    as its one features table needs (the Segment widget numbers a new stack the same way).

The model's output
    ``metadata["odise"]["model_output"] = {plane key: ModelOutput}`` (``()`` for a 2-D layer):
    what the model gave for each plane when its result was written into the layer (the Segment
    widget's run; a rerun or vocabulary change replaces it: the new output is the reference), kept
    to measure how much a person changed (:func:`layer_quality`, :mod:`napari_odise.quality`).
    One compact read-only copy per plane (a byte per pixel for up to 255 segments), stored once
    per model run, never per edit. It lives only in memory: files and datasets do not carry it,
    so layers opened from them have none (the dataset keeps the numbers, per image).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_odise.io.errors import DatasetError
from napari_odise.io.planes import PlaneKey, all_planes, plane_name
from napari_odise.quality import ModelOutput, Quality, compare, total
from napari_odise.result import (
    SOURCES,
    UNASSIGNED,
    UNASSIGNED_NAME,
    ImageSource,
    PanopticResult,
    features_table,
    segments_table,
)
from napari_odise.vocabulary import Vocabulary, VocabularyError

METADATA_KEY = "odise"
NAME_KEY, PATH_KEY, MODEL_KEY = "image_name", "image_path", "model"
MODEL_OUTPUT_KEY = "model_output"  # the model's own output per plane (see the module notes)
_LAYER_NAME_KEY = "image"  # the Segment widget's name for the image layer


# --- metadata ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerMetadata:
    """What ``metadata["odise"]`` says: the vocabulary (None when absent), the result's typed
    fields and the rest of ``info``."""

    vocabulary: Vocabulary | None
    info: dict
    source: ImageSource
    model: str | None


def layer_metadata(
    vocabulary: Vocabulary, info: Mapping | None = None, *, source: ImageSource = ImageSource(),
    model: str | None = None, model_output: Mapping[PlaneKey, ModelOutput] | None = None,
) -> dict:
    """``{"odise": {...}}`` for a layer's metadata; typed fields given override ``info``'s keys;
    ``model_output``: the model's output per plane (kept as given, not copied)."""
    info = dict(info or {})
    for key, value in ((NAME_KEY, source.name), (PATH_KEY, source.path), (MODEL_KEY, model)):
        if value is not None:
            info[key] = value
    odise = {"vocabulary": vocabulary.to_json(), "info": info}
    if model_output:
        odise[MODEL_OUTPUT_KEY] = dict(model_output)
    return {METADATA_KEY: odise}


def model_outputs(metadata: Mapping | None) -> dict[PlaneKey, ModelOutput]:
    """The model's output per plane that a layer keeps (empty when it keeps none)."""
    stored = _odise(metadata).get(MODEL_OUTPUT_KEY)
    if not isinstance(stored, Mapping):
        return {}
    return {key: value for key, value in stored.items() if isinstance(key, tuple) and isinstance(value, ModelOutput)}


def split_info(info: Mapping | None) -> tuple[dict, ImageSource, str | None]:
    """(the other keys, source, model) of a layer's ``info``."""
    info = dict(info) if isinstance(info, Mapping) else {}
    name = info.pop(NAME_KEY, None)
    layer_name = info.pop(_LAYER_NAME_KEY, None)
    path = info.pop(PATH_KEY, None)
    model = info.pop(MODEL_KEY, None)
    source = ImageSource(_text(name) or _text(layer_name), _text(path))
    return info, source, _text(model)


def read_metadata(metadata: Mapping | None) -> LayerMetadata:
    odise = _odise(metadata)
    info, source, model = split_info(odise.get("info"))
    stored = odise.get("vocabulary")
    return LayerMetadata(None if stored is None else _vocabulary(stored), info, source, model)


def layer_source(metadata: Mapping | None) -> ImageSource:
    """The image a layer's metadata names (the vocabulary is not read)."""
    return split_info(_odise(metadata).get("info"))[1]


def vocabulary_from_metadata(metadata: Mapping | None, fallback: Vocabulary | None = None) -> Vocabulary:
    """The layer's vocabulary, else ``fallback``, else :class:`DatasetError`."""
    vocabulary = read_metadata(metadata).vocabulary
    vocabulary = fallback if vocabulary is None else vocabulary
    if vocabulary is None:
        raise DatasetError(
            f"the layer carries no napari-odise vocabulary (metadata['{METADATA_KEY}']"
            f"['vocabulary']): segment it with napari-odise or open it from a dataset first"
        )
    return vocabulary


def _odise(metadata: Mapping | None) -> Mapping:
    odise = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
    return odise if isinstance(odise, Mapping) else {}


def _vocabulary(stored) -> Vocabulary:
    if isinstance(stored, Vocabulary):
        return stored
    try:
        return Vocabulary.from_json(stored if isinstance(stored, str) else json.dumps(stored))
    except (VocabularyError, TypeError, ValueError) as error:
        raise DatasetError(f"the layer's vocabulary is unreadable: {error}") from None


def _text(value) -> str | None:
    return None if value is None or value == "" else str(value)


# --- the table of a layer ----------------------------------------------------------------------
@dataclass
class SegmentRow:
    """What a layer knows about one id: its category, score, source, its pixel count when
    the row was made (a "model" row stays "model" only at that count), and whether a person
    marked it reviewed."""

    category_id: int = UNASSIGNED
    score: float = math.nan
    source: str = "edited"
    area: int = 0
    reviewed: bool = False

    def source_at(self, area: int) -> str:
        return "model" if self.source == "model" and self.area == area else "edited"


def count_ids(data) -> tuple[np.ndarray, np.ndarray, int]:
    """(ids > 0 present, their pixel counts, unlabeled pixel count) of a label array."""
    flat = np.asarray(data).ravel()
    largest = int(flat.max(initial=0))
    if largest <= 4 * flat.size + 1024:
        counts = np.bincount(flat, minlength=1)
        ids = np.flatnonzero(counts)
        ids = ids[ids > 0]
        return ids, counts[ids], int(counts[0])
    ids, counts = np.unique(flat, return_counts=True)  # a few huge ids: no giant bincount
    zero = int(counts[0]) if ids.size and ids[0] == 0 else 0
    return ids[ids > 0], counts[ids > 0], zero


def layer_rows(features, vocabulary: Vocabulary, counts: Mapping[int, int]) -> dict[int, SegmentRow]:
    """The rows of a features table (ids > 0) by the reading rules; ``counts`` (pixels per id now)
    stands in for a missing ``area``."""
    frame = pd.DataFrame(features) if features is not None else pd.DataFrame()
    if frame.empty or "index" not in frame.columns:
        return {}
    rows = {}
    for record in frame.to_dict("records"):
        if _missing(record["index"]) or int(record["index"]) <= 0:
            continue
        segment_id = int(record["index"])
        source = record.get("source")
        area = record.get("area")
        rows[segment_id] = SegmentRow(
            _category_id(record, vocabulary),
            math.nan if _missing(record.get("score")) else float(record["score"]),
            source if source in SOURCES else "edited",
            int(counts.get(segment_id, 0)) if _missing(area) else int(area),
            not _missing(record.get("reviewed")) and bool(record["reviewed"]),
        )
    return rows


def layer_table(
    ids: np.ndarray, areas: np.ndarray, rows: Mapping[int, SegmentRow], vocabulary: Vocabulary
) -> pd.DataFrame:
    """The segments table of the ids present (``areas``: their pixel counts): names from the
    vocabulary (unassigned where it lacks the category), sources by :meth:`SegmentRow.source_at`."""
    known = {c.id: c for c in vocabulary}
    category_ids, names, isthing, scores, sources, reviewed = [], [], [], [], [], []
    for segment_id, area in zip(np.asarray(ids).tolist(), np.asarray(areas).tolist()):
        row = rows.get(segment_id) or SegmentRow()
        category = known.get(row.category_id)
        category_ids.append(category.id if category else UNASSIGNED)
        names.append(category.name if category else UNASSIGNED_NAME)
        isthing.append(category.isthing if category else False)
        scores.append(row.score)
        sources.append(row.source_at(area))
        reviewed.append(row.reviewed)
    return segments_table(ids, category_ids, names, isthing, scores, areas, sources, reviewed)


def plane_table(plane: np.ndarray, table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` (the whole layer's) for the segments in one plane, with their areas
    in that plane."""
    ids, areas, _ = count_ids(plane)
    rows = table.set_index("id").loc[ids]
    return segments_table(
        ids, rows["category_id"], rows["category"], rows["isthing"], rows["score"], areas, rows["source"],
        rows["reviewed"],
    )


def segment_colors(table: pd.DataFrame, vocabulary: Vocabulary) -> dict:
    """Colours by the core's rule (``PanopticResult.colors``), which reads only the table and the
    vocabulary, so no label map is needed."""
    return PanopticResult(np.zeros((0, 0), np.int32), table, vocabulary).colors()


# --- layer -> results --------------------------------------------------------------------------
def plane_source(source: ImageSource, key: PlaneKey) -> ImageSource:
    """A plane's image: the layer's for a 2-D map; in a stack, the plane's name and no file."""
    if not key:
        return source
    return ImageSource(None if source.name is None else plane_name(source.name, key), None)


def plane_result(
    data, key: PlaneKey, table: pd.DataFrame, vocabulary: Vocabulary, *, info: Mapping | None = None,
    source: ImageSource = ImageSource(), **fields,
) -> PanopticResult:
    """One plane of a layer (``table``: the whole layer's) as a validated result; ``fields``:
    ``encoded``, ``settings``, ``model``."""
    plane = np.array(data[key] if key else data, dtype=np.int32)
    result = PanopticResult(
        plane, plane_table(plane, table), vocabulary, info=dict(info or {}),
        source=plane_source(source, key), **fields,
    )
    result.validate()
    return result


def results_from_labels(
    data, features, metadata: Mapping | None, fallback_vocabulary: Vocabulary | None = None
) -> dict[PlaneKey, PanopticResult]:
    """The results a Labels layer holds now, by plane (see the module notes)."""
    described = read_metadata(metadata)
    vocabulary = vocabulary_from_metadata(metadata, fallback_vocabulary)
    labels = label_array(data)
    ids, areas, _ = count_ids(labels)
    rows = layer_rows(features, vocabulary, dict(zip(ids.tolist(), areas.tolist())))
    table = layer_table(ids, areas, rows, vocabulary)
    keys = [()] if labels.ndim == 2 else [k for k in all_planes(labels.shape) if labels[k].any()]
    results = {
        key: plane_result(
            labels, key, table, vocabulary, info=described.info, source=described.source,
            model=described.model,
        )
        for key in keys
    }
    if labels.ndim > 2 and isinstance(described.info.get("stack_links"), Mapping):
        for result in results.values():  # a linked stack: an id is one object through the stack
            result.info["track_ids"] = {i: i for i in result.segments["id"].tolist()}
    return results


def result_from_labels(data, features, metadata: Mapping | None) -> PanopticResult:
    """The result a 2-D Labels layer holds now (a stack: :func:`results_from_labels`)."""
    if np.ndim(data) != 2:
        raise DatasetError(
            f"this label layer is {np.ndim(data)}-D: read it plane by plane (results_from_labels)"
        )
    return results_from_labels(data, features, metadata)[()]


def label_array(data) -> np.ndarray:
    """A layer's data as an int32 array of ids >= 0, at least 2-D."""
    labels = np.asarray(data)
    if labels.ndim < 2:
        raise DatasetError(f"label layers are 2-D or stacks of 2-D planes, this one is {labels.ndim}-D")
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise DatasetError("label ids must be non-negative integers")
    if labels.size and labels.max() > np.iinfo(np.int32).max:
        raise DatasetError("label ids must lie in 0..2**31-1")
    return labels.astype(np.int32, copy=False)


# --- results -> layer --------------------------------------------------------------------------
def stacked_labels(
    results: Mapping[PlaneKey, PanopticResult], shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, pd.DataFrame]:
    """(label data, the layer's segments table) holding results by plane (see the module notes).
    ``shape`` defaults to the smallest stack holding every key."""
    if set(results) == {()}:
        (result,) = results.values()
        return result.label_map, result.segments
    keys = sorted(results)
    if not keys or () in keys or len({len(k) for k in keys}) > 1:
        raise DatasetError(f"plane keys must be one () or tuples of one length, not {keys}")
    plane_shape = results[keys[0]].label_map.shape
    if any(results[k].label_map.shape != plane_shape for k in keys):
        raise DatasetError("the planes of a stack must have one shape")
    if shape is None:
        shape = (*(max(k[axis] for k in keys) + 1 for axis in range(len(keys[0]))), *plane_shape)
    data = np.zeros(shape, dtype=np.int32)
    tables = []
    next_id = 1
    for key in keys:
        label_map, segments = results[key].label_map, results[key].segments
        old_ids = segments["id"].to_numpy()
        new_ids = np.arange(next_id, next_id + len(old_ids), dtype=np.int32)
        if len(old_ids):  # every id of the map has a row (a result is valid), so ranks are exact
            data[key] = np.where(label_map > 0, new_ids[np.searchsorted(old_ids, label_map)], 0)
        tables.append(segments.assign(id=new_ids.astype(np.int64)))
        next_id += len(old_ids)
    return data, pd.concat(tables, ignore_index=True)


def labels_layer_data(
    results: PanopticResult | Mapping[PlaneKey, PanopticResult], name: str, *,
    source: ImageSource | None = None,
) -> tuple:
    """A napari layer data tuple of a result, or of results by plane (a stack). ``colormap`` is
    the dict napari turns into a ``DirectLabelColormap`` (the caller may wrap it explicitly).
    Metadata: the vocabulary they share, the first plane's ``info`` and ``model``, and ``source``
    (default: a 2-D result's own; a stack's planes have none in common)."""
    if isinstance(results, PanopticResult):
        results = {(): results}
    data, table = stacked_labels(results)
    first = results[min(results)]
    if any(r.vocabulary != first.vocabulary for r in results.values()):
        raise DatasetError("the planes of a stack must share one vocabulary")
    if source is None:
        source = first.source if set(results) == {()} else ImageSource()
    kwargs = {
        "name": name,
        "features": features_table(table, int(np.count_nonzero(data == 0))),
        "colormap": segment_colors(table, first.vocabulary),
        "metadata": layer_metadata(first.vocabulary, first.info, source=source, model=first.model),
        "opacity": 0.6,
    }
    return (data, kwargs, "labels")


def _category_id(record: Mapping, vocabulary: Vocabulary) -> int:
    """The row's category id (kept even when the vocabulary lacks it), else by name; else unassigned."""
    category_id = record.get("category_id")
    if not _missing(category_id):
        return int(category_id)
    name = record.get("category")
    if isinstance(name, str) and name in vocabulary:
        return vocabulary.by_name(name).id
    return UNASSIGNED


def _missing(value) -> bool:
    """Missing, whichever way pandas spells it (NaN, None, pd.NA)."""
    return value is None or bool(pd.isna(value))


# --- how much a person changed -----------------------------------------------------------------
def layer_quality(data, features, metadata: Mapping | None) -> Quality | None:
    """The model's output the layer keeps against the layer now (:mod:`napari_odise.quality`),
    summed over its planes; None when it keeps none (a layer read from a file, or drawn)."""
    outputs = model_outputs(metadata)
    if not outputs:
        return None
    vocabulary = vocabulary_from_metadata(metadata)
    labels = label_array(data)
    ids, areas, _ = count_ids(labels)
    rows = layer_rows(features, vocabulary, dict(zip(ids.tolist(), areas.tolist())))
    known = {c.id: c.isthing for c in vocabulary}
    categories = {i: row.category_id if row.category_id in known else UNASSIGNED for i, row in rows.items()}
    planes = [
        (labels[key] if key else labels, output) for key, output in outputs.items()
        if len(key) == labels.ndim - 2 and (labels[key] if key else labels).shape == output.shape
    ]
    if not planes:
        return None
    return total(compare(plane, categories, output, known) for plane, output in planes)


def plane_references(
    results: Mapping[PlaneKey, PanopticResult], metadata: Mapping | None
) -> dict[PlaneKey, ModelOutput]:
    """The model's output for each of these results' planes that the layer keeps (for export)."""
    outputs = model_outputs(metadata)
    return {
        key: outputs[key] for key, result in results.items()
        if key in outputs and outputs[key].shape == result.label_map.shape
    }
