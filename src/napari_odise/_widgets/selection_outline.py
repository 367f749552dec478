"""The Refine selection drawn on the canvas: each selected segment outlined in one bright colour,
in a contour-only Labels layer just above the segments (micro-sam and napari's own tools show what
an edit will act on; a list of ids alone does not)."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap

from .overlays import DERIVED_KEY

OUTLINE_COLOR = (1.0, 0.9, 0.0, 1.0)  # yellow: rare among category colours, visible on most images
OUTLINE_WIDTH = 2


def insert_overlay(viewer, labels: Labels, data: np.ndarray, kind: str, color) -> Labels:
    """A one-colour Labels layer named ``<labels> <kind>`` just above ``labels``, with its scale
    and offset; the active layer stays the one being edited (keys and brushes keep going to it)."""
    overlay = Labels(
        data,
        name=f"{labels.name} {kind}",
        scale=labels.scale,
        translate=labels.translate,
        opacity=1.0,
        metadata={DERIVED_KEY: kind},
    )
    overlay.colormap = DirectLabelColormap(color_dict={None: color, 0: (0, 0, 0, 0)})
    active = viewer.layers.selection.active
    viewer.layers.insert(viewer.layers.index(labels) + 1, overlay)
    viewer.layers.selection.active = active
    return overlay


class SelectionOutline:
    def __init__(self, viewer):
        self.viewer = viewer
        self.layer: Labels | None = None

    def show(self, labels: Labels | None, selection: list[int]) -> None:
        """Outline ``selection`` (segment ids) of ``labels``; nothing selected removes the outline."""
        if labels is None or not selection:
            self.close()
            return
        data = np.asarray(labels.data)
        outlined = np.where(np.isin(data, selection), data, 0)
        if self.layer is None or self.layer not in self.viewer.layers:
            self.layer = insert_overlay(self.viewer, labels, outlined, "selection", OUTLINE_COLOR)
            self.layer.contour = OUTLINE_WIDTH
        else:
            self.layer.data = outlined

    def close(self) -> None:
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = None
