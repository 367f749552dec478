"""PanopticResult: one image's segmentation as a label map plus a segments table.

The label map says where each segment is; the table says what it is. Everything downstream
(editing, napari layers, export) relies on the two agreeing, so :func:`check_consistency` spells
the agreement out and every constructor and edit keeps it.

Unassigned segments (painted ids nobody has given a category yet) have ``category_id`` -1
(:data:`UNASSIGNED`), category ``"unassigned"``, ``isthing`` False and no score: they are shown
and kept, but they are not instances and exporters should skip them.
"""

from __future__ import annotations

import copy as _copy
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage

from napari_odise.colors import instance_shade
from napari_odise.model.settings import InferenceSettings
from napari_odise.vocabulary import Category, Vocabulary

SEGMENT_COLUMNS = ["id", "category_id", "category", "isthing", "score", "area", "source", "reviewed"]
SOURCES = ("model", "edited")
UNASSIGNED = -1
UNASSIGNED_NAME = "unassigned"
UNLABELED_NAME = "unlabeled"
_UNASSIGNED_RGB = (128, 128, 128)
_BOUNDARY_SHIFT = 1  # boundaries at half the segment colour's brightness


@dataclass(frozen=True)
class ImageSource:
    """Which image a result belongs to: its name (a file stem or a layer name) and its file, if any."""

    name: str | None = None
    path: str | None = None


def segments_table(
    ids: Sequence[int] = (),
    category_ids: Sequence[int] = (),
    categories: Sequence[str] = (),
    isthing: Sequence[bool] = (),
    scores: Sequence[float] = (),
    areas: Sequence[int] = (),
    sources: Sequence[str] = (),
    reviewed: Sequence[bool] | None = None,
) -> pd.DataFrame:
    """A segments table with the canonical columns and dtypes, sorted by id.

    ``reviewed`` (a person checked the segment; default: none marked) is always true for an
    "edited" segment: a person who changed it has looked at it."""
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    marked = np.zeros(len(sources), bool) if reviewed is None else np.asarray(reviewed, dtype=bool)
    columns = {
        "id": ids,
        "category_id": np.asarray(category_ids, dtype=np.int64),
        "category": _object_array(categories),
        "isthing": np.asarray(isthing, dtype=bool),
        "score": np.asarray(scores, dtype=np.float64),
        "area": np.asarray(areas, dtype=np.int64),
        "source": _object_array(sources),
        "reviewed": marked,
    }
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"segment columns differ in length: {lengths}")
    columns["reviewed"] = marked | (columns["source"] == "edited")
    # Text columns get pandas' default text dtype ("str" in pandas 3, object before), also
    # when empty, so tables compare equal however they were made.
    return pd.DataFrame(
        {
            name: pd.Series(values[order], dtype=str) if values.dtype == object else values[order]
            for name, values in columns.items()
        }
    )


def _object_array(values: Sequence) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def category_fields(category: Category | None) -> tuple[int, str, bool]:
    """(category_id, category, isthing) of a table row for a category; None means unassigned."""
    if category is None:
        return UNASSIGNED, UNASSIGNED_NAME, False
    return category.id, category.name, category.isthing


def check_consistency(
    label_map: np.ndarray,
    segments: pd.DataFrame,
    vocabulary: Vocabulary | None = None,
    pixel_counts: np.ndarray | None = None,
) -> None:
    """Raise ValueError naming the first broken rule between a label map and its table.

    Rules: int32 2-D map with ids >= 0 (0 = unlabeled); exactly SEGMENT_COLUMNS; ids unique,
    sorted, >= 1; every id in the map has a row and every row has pixels; area = pixel count;
    source is "model" or "edited"; reviewed is boolean; with a vocabulary, each row's category_id
    is in it (or is UNASSIGNED) with that category's name and thing flag.

    ``pixel_counts`` (indexed by id) stands for the map's bincount when the caller counted the
    pixels as it painted them (the panoptic merge does), which saves a pass over a large map.
    """
    if not isinstance(label_map, np.ndarray):
        raise ValueError(f"label map must be a numpy array, not {type(label_map).__name__}")
    if label_map.dtype != np.int32:
        raise ValueError(f"label map dtype must be int32, not {label_map.dtype}")
    if label_map.ndim != 2:
        raise ValueError(f"label map must be 2-D (H, W), not shape {label_map.shape}")
    if label_map.size and label_map.min() < 0:
        raise ValueError(f"label map has negative id {int(label_map.min())}")
    if list(segments.columns) != SEGMENT_COLUMNS:
        raise ValueError(
            f"segments columns must be {SEGMENT_COLUMNS}, not {list(segments.columns)}"
        )
    ids = segments["id"].to_numpy()
    if len(ids) and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"segment ids must be integers, not {ids.dtype}")
    duplicated = np.unique(ids[pd.Series(ids).duplicated().to_numpy()])
    if duplicated.size:
        raise ValueError(f"duplicated segment ids in the table: {duplicated.tolist()}")
    if len(ids) and ids.min() < 1:
        raise ValueError(f"segment ids must be >= 1 (0 is unlabeled), found {int(ids.min())}")
    if np.any(np.diff(ids) < 0):
        raise ValueError("segments table is not sorted by id")
    areas = np.bincount(label_map.ravel(), minlength=1) if pixel_counts is None else pixel_counts
    present = np.flatnonzero(areas)
    present = present[present > 0]
    without_row = np.setdiff1d(present, ids)
    if without_row.size:
        raise ValueError(f"ids in the label map without a table row: {without_row.tolist()}")
    counted = np.zeros(len(ids), dtype=np.int64)
    inside = ids < len(areas)
    counted[inside] = areas[ids[inside]]
    empty = ids[counted == 0]
    if empty.size:
        raise ValueError(f"table rows without pixels in the label map: {empty.tolist()}")
    wrong = counted != segments["area"].to_numpy()
    if np.any(wrong):
        first = int(np.flatnonzero(wrong)[0])
        raise ValueError(
            f"wrong area for segment {int(ids[first])}: table says "
            f"{int(segments['area'].iloc[first])}, label map has {int(counted[first])} pixels"
        )
    if segments["reviewed"].dtype != bool:
        raise ValueError(f"the reviewed column must be boolean, not {segments['reviewed'].dtype}")
    bad_source = ~segments["source"].isin(SOURCES).to_numpy()
    if np.any(bad_source):
        raise ValueError(
            f"source must be one of {SOURCES}; segment {int(ids[bad_source][0])} has "
            f"{segments['source'].to_numpy()[bad_source][0]!r}"
        )
    if vocabulary is not None:
        _check_categories(segments, vocabulary)


def _check_categories(segments: pd.DataFrame, vocabulary: Vocabulary) -> None:
    expected = {c.id: (c.name, c.isthing) for c in vocabulary}
    expected[UNASSIGNED] = (UNASSIGNED_NAME, False)
    for segment_id, category_id, name, isthing in zip(
        segments["id"], segments["category_id"], segments["category"], segments["isthing"]
    ):
        if category_id not in expected:
            raise ValueError(
                f"segment {segment_id}: category_id {category_id} is not in vocabulary "
                f"{vocabulary.name!r}"
            )
        if (name, bool(isthing)) != expected[category_id]:
            raise ValueError(
                f"segment {segment_id}: category {name!r}/isthing={bool(isthing)} does not match "
                f"category_id {category_id} ({expected[category_id][0]!r}/"
                f"isthing={expected[category_id][1]})"
            )


FEATURE_COLUMNS = [
    "index", "category", "category_id", "isthing", "score", "area", "source", "reviewed"
]


def features_table(segments: pd.DataFrame, unlabeled_area: int) -> pd.DataFrame:
    """A Labels layer's ``features``: an ``index`` column of segment ids, then the segment columns.
    Row 0 ('unlabeled') is included because napari shows '[No Properties]' when hovering a value
    missing from ``index``."""
    background = pd.DataFrame(
        {
            "index": [0],
            "category": [UNLABELED_NAME],
            "category_id": [UNASSIGNED],
            "isthing": [False],
            "score": [np.nan],
            "area": [unlabeled_area],
            "source": [""],
            "reviewed": [False],
        }
    )
    rows = segments.rename(columns={"id": "index"})[FEATURE_COLUMNS]
    return pd.concat([background, rows], ignore_index=True).astype(
        {"index": np.int64, "category_id": np.int64, "isthing": bool, "score": np.float64,
         "area": np.int64, "category": object, "source": object, "reviewed": bool}
    )


@dataclass
class PanopticResult:
    """A panoptic segmentation of one image.

    ``encoded`` holds the model's per-query tensors so the predictor can re-classify with a new
    vocabulary without re-running the backbone; this module never looks inside it.
    ``query_ids`` maps a segment id to the model queries it came from (edited segments: none).
    ``model`` and ``settings`` say what made it (re-classification uses the same settings);
    ``info`` carries what other formats bring along (crowd ids, supercategories, provenance).
    ``margins`` maps a model segment's id to its category's probability minus the runner-up
    category's, from the classification that made it (the review queue reads it; edits drop it).
    """

    label_map: np.ndarray
    segments: pd.DataFrame
    vocabulary: Vocabulary
    encoded: object | None = None
    query_ids: dict[int, list[int]] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    settings: InferenceSettings | None = None
    model: str | None = None
    source: ImageSource = ImageSource()
    margins: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_segments_info(
        cls,
        label_map: np.ndarray,
        segments_info: Iterable[Mapping],
        vocabulary: Vocabulary,
        scores: Mapping[int, float] | Sequence[float] | None = None,
        encoded: object | None = None,
        info: dict | None = None,
        pixel_counts: Mapping[int, int] | None = None,
        **made_by,
    ) -> PanopticResult:
        """From a panoptic merge's output: a map of segment ids and one dict per segment
        (``id``, ``category_id``, ``isthing``, optional ``score``, ``query_ids`` and ``margin``).

        ``scores`` (by segment id, or aligned with ``segments_info``) overrides ``score``.
        Names and thing flags come from the vocabulary, the source of truth; areas from the map,
        or from ``pixel_counts`` (by segment id) when the caller counted them while painting it.
        Segments without pixels are dropped; a map id without a dict is an error.
        ``made_by``: the ``settings``, ``model`` and ``source`` fields.
        """
        label_map = _as_label_map(label_map)
        segments_info = list(segments_info)
        if scores is not None and not isinstance(scores, Mapping):
            scores = {int(s["id"]): float(v) for s, v in zip(segments_info, scores, strict=True)}
        if pixel_counts is None:
            areas = np.bincount(label_map.ravel(), minlength=1)
        else:
            areas = np.zeros(max(pixel_counts, default=0) + 1, dtype=np.int64)
            areas[list(pixel_counts)] = list(pixel_counts.values())
        rows = []
        query_ids = {}
        margins = {}
        for segment in segments_info:
            segment_id = int(segment["id"])
            if segment_id >= len(areas) or areas[segment_id] == 0:
                continue
            category_id = int(segment["category_id"])
            if category_id == UNASSIGNED:
                fields = category_fields(None)
            else:
                try:
                    fields = category_fields(vocabulary.by_id(category_id))
                except KeyError as error:
                    raise ValueError(f"segment {segment_id}: {error.args[0]}") from None
            score = segment.get("score", np.nan)
            if scores is not None:
                score = scores.get(segment_id, score)
            rows.append((segment_id, *fields, float(score), int(areas[segment_id]), "model"))
            query_ids[segment_id] = [int(q) for q in segment.get("query_ids", ())]
            if segment.get("margin") is not None:
                margins[segment_id] = float(segment["margin"])
        table = segments_table(*zip(*rows)) if rows else segments_table()
        result = cls(
            label_map, table, vocabulary, encoded, query_ids, dict(info or {}), margins=margins,
            **made_by,
        )
        result.validate(None if pixel_counts is None else areas)
        return result

    def validate(self, pixel_counts: np.ndarray | None = None) -> None:
        """Raise ValueError if the label map, table and vocabulary disagree."""
        check_consistency(self.label_map, self.segments, self.vocabulary, pixel_counts)
        ids = set(self.segments["id"].tolist())
        stray = set(self.query_ids) - ids
        if stray:
            raise ValueError(f"query_ids for segments not in the table: {sorted(stray)}")
        stray = set(self.margins) - ids
        if stray:
            raise ValueError(f"margins for segments not in the table: {sorted(stray)}")

    # --- derived views ------------------------------------------------------------------------
    def _lookup(self, column: str, fill) -> np.ndarray:
        """Array indexed by segment id holding ``column`` (``fill`` where no segment)."""
        largest_row = int(self.segments["id"].max()) if len(self.segments) else 0
        size = max(int(self.label_map.max(initial=0)), largest_row) + 1
        values = self.segments[column].to_numpy()
        lut = np.full(size, fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
        lut[self.segments["id"].to_numpy()] = values
        return lut

    def semantic_map(self, unlabeled: int = -1) -> np.ndarray:
        """int32 HxW of category ids; ``unlabeled`` where no segment (unassigned segments: -1)."""
        lut = self._lookup("category_id", unlabeled).astype(np.int32)
        return lut[self.label_map]

    def instances(self) -> list[dict]:
        """Thing segments (unassigned ones excluded), each with a full-size mask and an
        ``[x, y, w, h]`` box, in id order."""
        things = self.segments[
            self.segments["isthing"] & (self.segments["category_id"] != UNASSIGNED)
        ]
        boxes = ndimage.find_objects(self.label_map)
        result = []
        for row in things.itertuples(index=False):
            ys, xs = boxes[row.id - 1]
            result.append(
                {
                    "id": int(row.id),
                    "category_id": int(row.category_id),
                    "category": row.category,
                    "score": float(row.score),
                    "mask": self.label_map == row.id,
                    "bbox": [xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start],
                    "area": int(row.area),
                }
            )
        return result

    def segment_rgb(self) -> dict[int, tuple[int, int, int]]:
        """Display colour per segment: the category colour; the k-th instance of a thing
        category (in id order) gets shade k of it; unassigned segments are grey."""
        colors = {}
        instances_seen: dict[int, int] = {}
        for segment_id, category_id, isthing in zip(
            self.segments["id"], self.segments["category_id"], self.segments["isthing"]
        ):
            if category_id == UNASSIGNED:
                colors[int(segment_id)] = _UNASSIGNED_RGB
                continue
            base = self.vocabulary.by_id(int(category_id)).color
            k = 0
            if isthing:
                k = instances_seen.get(category_id, 0)
                instances_seen[category_id] = k + 1
            colors[int(segment_id)] = instance_shade(base, k)
        return colors

    def colors(self) -> dict[int | None, tuple[float, float, float, float]]:
        """RGBA floats per segment id for napari's DirectLabelColormap: 0 transparent, and a
        ``None`` entry (grey) so ids painted before the table knows them stay visible."""
        colors: dict[int | None, tuple[float, float, float, float]] = {
            0: (0.0, 0.0, 0.0, 0.0),
            None: (*(v / 255 for v in _UNASSIGNED_RGB), 1.0),
        }
        for segment_id, rgb in self.segment_rgb().items():
            colors[segment_id] = (rgb[0] / 255, rgb[1] / 255, rgb[2] / 255, 1.0)
        return colors

    def overlay(self, image_rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """uint8 RGB: segments blended over the image, their boundaries in a darker shade."""
        image = np.asarray(image_rgb)
        if image.shape != (*self.label_map.shape, 3):
            raise ValueError(
                f"image shape {image.shape} does not match label map {self.label_map.shape} + RGB"
            )
        if image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 RGB, not {image.dtype}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        # Colours packed into one uint32 per id: a 1-D lookup is much faster than an (N, 3) one.
        lut = np.zeros((self._lookup("id", 0).size, 4), dtype=np.uint8)
        for segment_id, rgb in self.segment_rgb().items():
            lut[segment_id, :3] = rgb
        packed = lut.view(np.uint32)[:, 0][self.label_map]
        colors = packed.view(np.uint8).reshape(*self.label_map.shape, 4)[..., :3]
        # Fixed-point blend in uint16 (weights out of 256): half the memory traffic of floats.
        weight = np.where(self.label_map > 0, np.uint16(round(alpha * 256)), np.uint16(0))
        weight = weight[..., None]
        blended = (image.astype(np.uint16) * (256 - weight) + colors * weight + 128) >> 8
        edge = _inner_boundaries(self.label_map)[..., None]
        return np.where(edge, colors >> _BOUNDARY_SHIFT, blended).astype(np.uint8)

    def features(self) -> pd.DataFrame:
        """Table for a napari Labels layer (see :func:`features_table`)."""
        return features_table(self.segments, int(np.count_nonzero(self.label_map == 0)))

    # --- new results --------------------------------------------------------------------------
    def with_vocabulary(self, vocabulary: Vocabulary, segments: pd.DataFrame) -> PanopticResult:
        """Same map, model tensors and info, re-labelled under another vocabulary."""
        result = dataclasses.replace(
            self,
            segments=segments,
            vocabulary=vocabulary,
            query_ids={k: list(v) for k, v in self.query_ids.items() if k in set(segments["id"].tolist())},
            info=dict(self.info),
            margins={},  # they compared the old vocabulary's categories
        )
        result.validate()
        return result

    def with_edit(self, label_map: np.ndarray, segments: pd.DataFrame) -> PanopticResult:
        """After an edit (``refine``): query ids and margins are kept for segments still untouched
        by edits, since an edited segment no longer is what those queries predicted."""
        untouched = set(segments.loc[segments["source"] == "model", "id"].tolist())
        result = dataclasses.replace(
            self,
            label_map=label_map,
            segments=segments,
            query_ids={k: list(v) for k, v in self.query_ids.items() if k in untouched},
            info=dict(self.info),
            margins={k: v for k, v in self.margins.items() if k in untouched},
        )
        result.validate()
        return result

    def copy(self) -> PanopticResult:
        """Independent map, table, query ids and info; ``encoded`` is shared (read-only tensors)."""
        return dataclasses.replace(
            self,
            label_map=self.label_map.copy(),
            segments=self.segments.copy(deep=True),
            query_ids={k: list(v) for k, v in self.query_ids.items()},
            info=_copy.deepcopy(self.info),
            margins=dict(self.margins),
        )


def _as_label_map(label_map: np.ndarray) -> np.ndarray:
    array = np.asarray(label_map)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"label map must hold integers, not {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int32).max):
        raise ValueError("label map ids must lie in 0..2**31-1")
    return array.astype(np.int32, copy=True)


def _inner_boundaries(label_map: np.ndarray) -> np.ndarray:
    """Labelled pixels with a 4-neighbour of another id (the image border does not count)."""
    edge = np.zeros(label_map.shape, dtype=bool)
    vertical = label_map[1:, :] != label_map[:-1, :]
    horizontal = label_map[:, 1:] != label_map[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge & (label_map > 0)
