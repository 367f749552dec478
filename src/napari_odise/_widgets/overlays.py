"""Optional views that follow a segmentation layer's table: category names drawn on the segments
(a Points layer with text) and a semantic Labels layer (one value per category).

Both are derived and read-only: they are rebuilt whenever the table changes, so painting, refining
and re-classifying show up in them at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from napari_odise.result import UNASSIGNED, UNLABELED_NAME

from .layer_state import SegmentationLayer

DERIVED_KEY = "odise_derived"  # metadata flag of layers computed from another (not to refine)
# each name in black or white, whichever stands out from its own segment's colour
_TEXT = {"string": "{category}", "color": {"feature": "text_color"}, "size": 12, "anchor": "center"}


def text_colors(state: SegmentationLayer, coords: np.ndarray) -> list[str]:
    """Black on light segments, white on dark ones (by the segment colour's luminance)."""
    data = np.asarray(state.layer.data)
    ids = data[tuple(np.round(coords).astype(int).T)] if len(coords) else []
    colors = state.layer.colormap.color_dict
    out = []
    for segment_id in np.asarray(ids).tolist():
        r, g, b = tuple(colors.get(segment_id, (0.5, 0.5, 0.5, 1.0)))[:3]
        out.append("black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")
    return out


def names_features(state: SegmentationLayer, coords: np.ndarray, names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"category": names, "text_color": text_colors(state, coords)})


def label_points(data: np.ndarray, table: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """One point per segment at its most interior pixel (a centroid can fall outside a curved
    segment), with the segment's category name."""
    data = np.asarray(data)
    boxes = ndimage.find_objects(data)
    coords, names = [], []
    for segment_id, name in zip(table["id"].tolist(), table["category"].tolist()):
        box = boxes[segment_id - 1] if segment_id <= len(boxes) else None
        if box is None:
            continue
        mask = np.pad(data[box] == segment_id, 1)  # padded so the box border counts as outside
        depth = ndimage.distance_transform_edt(mask)
        inner = np.unravel_index(int(np.argmax(depth)), mask.shape)
        coords.append([s.start + i - 1 for s, i in zip(box, inner)])
        names.append(name)
    return np.asarray(coords, dtype=float).reshape(-1, data.ndim), names


def semantic_data(state: SegmentationLayer) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """(values, features, colors): value = position of the category in the vocabulary + 1 (0
    unlabeled; ids can be 0 in some presets, positions cannot), so hovering shows the category."""
    vocabulary = state.vocabulary
    table = state.table
    largest = int(table["id"].max()) if len(table) else 0
    lut = np.zeros(largest + 1, dtype=np.int32)
    for segment_id, category_id in zip(table["id"].tolist(), table["category_id"].tolist()):
        if category_id != UNASSIGNED:
            lut[segment_id] = vocabulary.index_of(category_id) + 1
    data = np.asarray(state.layer.data)
    values = lut[np.minimum(data, largest)] * (data <= largest)
    features = pd.DataFrame(
        {
            "index": np.arange(len(vocabulary) + 1),
            "category": [UNLABELED_NAME, *vocabulary.names],
            "category_id": [UNASSIGNED, *vocabulary.ids],
        }
    )
    colors = {0: (0, 0, 0, 0), None: (0.5, 0.5, 0.5, 1.0)}
    for position, category in enumerate(vocabulary, start=1):
        colors[position] = (*(v / 255 for v in category.color), 1.0)
    return values.astype(np.int32), features, colors


class NamesOverlay:
    """A Points layer "<labels> names" whose text follows the table."""

    def __init__(self, viewer, state: SegmentationLayer):
        self.viewer, self.state = viewer, state
        coords, names = label_points(state.layer.data, state.table)
        self.layer = viewer.add_points(
            coords,
            name=f"{state.layer.name} names",
            features=names_features(state, coords, names),
            text=_TEXT,
            size=1,
            face_color="transparent",
            border_width=0,
            scale=state.layer.scale,
            translate=state.layer.translate,
            out_of_slice_display=False,
        )
        state.table_changed.connect(self.update)

    def update(self) -> None:
        if self.layer not in self.viewer.layers:
            self.state.table_changed.disconnect(self.update)
            return
        coords, names = label_points(self.state.layer.data, self.state.table)
        self.layer.data = coords
        self.layer.features = names_features(self.state, coords, names)
        self.layer.text = _TEXT


class SemanticOverlay:
    """A read-only Labels layer "<image> semantic" with one value per category."""

    def __init__(self, viewer, state: SegmentationLayer):
        from napari.utils.colormaps import DirectLabelColormap

        self.viewer, self.state = viewer, state
        values, features, colors = semantic_data(state)
        name = state.layer.name.removesuffix(" panoptic") + " semantic"
        self.layer = viewer.add_labels(
            values,
            name=name,
            features=features,
            colormap=DirectLabelColormap(color_dict=colors),
            scale=state.layer.scale,
            translate=state.layer.translate,
            metadata={DERIVED_KEY: "semantic"},
        )
        self.layer.editable = False
        state.table_changed.connect(self.update)

    def update(self) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        if self.layer not in self.viewer.layers:
            self.state.table_changed.disconnect(self.update)
            return
        values, features, colors = semantic_data(self.state)
        self.layer.data = values
        self.layer.features = features
        self.layer.colormap = DirectLabelColormap(color_dict=colors)
        self.layer.editable = False
