"""The review queue part of the Refine panel: walk a plane's segments least-confident first.

The order is :mod:`napari_odise.review`'s rule. J / Shift+J select the next / previous unreviewed
segment and centre and zoom the view on it; V marks the current segment (or the selection)
reviewed and moves on; Shift+V takes the mark back. Edits make segments reviewed by themselves
(an edited segment always counts), so the "n of N reviewed" line follows every edit too. The flag
lives in the layer's features (``reviewed``) and goes into the exported dataset.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_warning
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_odise.review import progress, review_order, reviewed_ids, step

from .shortcuts import LayerKeys

# key -> (queue method, description): bound on the refined layer the way shortcuts.py binds
REVIEW_KEYS: dict[str, tuple[str, str]] = {
    "J": ("next_segment", "select the next unreviewed segment (least confident first) and zoom to it"),
    "Shift-J": ("previous_segment", "select the previous unreviewed segment and zoom to it"),
    "V": ("mark_reviewed", "mark the current segment (or the selection) reviewed, then go to the next"),
    "Shift-V": ("unmark_reviewed", "take the reviewed mark off the current segment (or the selection)"),
}
MIN_VIEW = 32  # data pixels: a speck is shown with this much around it at least
MARGIN = 0.25  # of the segment's box on each side


def review_help() -> str:
    return "Review queue: " + "; ".join(f"{key}: {text}" for key, (_, text) in REVIEW_KEYS.items())


def layer_margins(state, key, table) -> dict[int, float]:
    """The model's margins (:attr:`PanopticResult.margins`) of a plane's "model" segments under
    their layer ids. Layer ids differ from the result's, but a "model" segment is exactly the
    result's pixels, so any pixel of it names its result segment (whose category must be the
    segment's: otherwise the margin belongs to another answer and is left out)."""
    made = state.model_results.get(key)
    plane = np.asarray(state.plane(key))
    if made is None or not made.margins or made.label_map.shape != plane.shape:
        return {}
    model = table[table["source"] == "model"]
    if model.empty:
        return {}
    result_of = np.zeros(int(plane.max(initial=0)) + 1, dtype=np.int64)
    result_of[plane.ravel()] = made.label_map.ravel()  # one value per model segment: its result id
    made_category = dict(zip(made.segments["id"].tolist(), made.segments["category_id"].tolist()))
    margins = {}
    for layer_id, category_id in zip(model["id"].tolist(), model["category_id"].tolist()):
        made_id = int(result_of[layer_id])
        if made_id in made.margins and made_category.get(made_id) == category_id:
            margins[layer_id] = made.margins[made_id]
    return margins


class ReviewQueue(QWidget):
    """The review part of the Refine panel; ``panel`` is the :class:`RefineWidget`."""

    def __init__(self, panel):
        super().__init__()
        self.panel = panel
        self.viewer = panel.viewer
        self.layer: Labels | None = None
        self.visited: int | None = None  # the segment the queue went to last
        self._margins = None  # (model result, plane key and model ids, their margins)
        self._keys = LayerKeys(self._key, REVIEW_KEYS)

        self.counter = QLabel("")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        row = QHBoxLayout()
        for text, key in (("Previous (Shift+J)", "Shift-J"), ("Next (J)", "J"), ("Reviewed (V)", "V")):
            method, description = REVIEW_KEYS[key]
            button = QPushButton(text)
            button.setToolTip(description)
            button.clicked.connect(lambda _=False, method=method: self._key(method))
            row.addWidget(button)
        self.setToolTip(review_help())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Review queue, least confident first (J, Shift+J, V, Shift+V)"))
        layout.addWidget(self.counter)
        layout.addLayout(row)
        layout.addWidget(self.note)

    # --- following the panel's layer -------------------------------------------------------------
    def set_layer(self, layer: Labels | None) -> None:
        if layer is self.layer:
            return
        if self.layer is not None:
            self._keys.unbind()
            self.viewer.dims.events.current_step.disconnect(self.refresh)
        self.layer = layer
        self.visited = None
        self._margins = None
        self.note.setText("")
        if layer is not None:
            self._keys.bind(layer)
            self.viewer.dims.events.current_step.connect(self.refresh)
        self.refresh()

    def refresh(self, event=None) -> None:
        """Show "n of N reviewed" for the plane in view (and the whole layer for a stack)."""
        state = self.panel.state
        if self.layer is None or state is None:
            self.counter.setText("")
            return
        key = self.panel.plane
        done, total = progress(self.plane_table())
        text = f"{done} of {total} reviewed"
        if key:
            layer_done, layer_total = progress(state.table)
            text += f" in this plane; {layer_done} of {layer_total} in the layer"
        self.counter.setText(text)

    # --- the queue ---------------------------------------------------------------------------------
    def plane_table(self):
        """The table of the plane in view (a 2-D layer's own: no recount)."""
        state, key = self.panel.state, self.panel.plane
        return state.plane_table(key) if key else state.table

    def order(self, table=None) -> list[int]:
        """The plane's segment ids in review order (reviewed ones included)."""
        state, key = self.panel.state, self.panel.plane
        table = self.plane_table() if table is None else table
        plane_pixels = int(np.prod(np.shape(state.plane(key))))
        return review_order(table, plane_pixels, self.margins(key, table))

    def margins(self, key, table) -> dict[int, float]:
        """:func:`layer_margins`, recomputed only when the model result or its segments in the
        layer change (a pass over the pixels; marking and stepping change neither)."""
        made = self.panel.state.model_results.get(key)
        which = (key, tuple(table.loc[table["source"] == "model", "id"].tolist()))
        if self._margins is None or self._margins[0] is not made or self._margins[1] != which:
            self._margins = (made, which, layer_margins(self.panel.state, key, table))
        return self._margins[2]

    def next_segment(self) -> int | None:
        return self._step(forward=True)

    def previous_segment(self) -> int | None:
        return self._step(forward=False)

    def _step(self, forward: bool) -> int | None:
        """From the segment the queue went to last, the next (previous) unreviewed one; when the
        current segment is another (picked by hand, or new after an edit), the queue's head."""
        table = self.plane_table()
        current = self.panel.current_id()
        start = current if current == self.visited else None
        target = step(self.order(table), reviewed_ids(table), start, forward=forward or start is None)
        if target is None:
            self.note.setText(f"All {len(table)} segments of this plane are reviewed")
            return None
        self.note.setText("")
        self.go_to(target)
        return target

    def go_to(self, segment_id: int) -> None:
        """Make a segment current and centre and zoom the view on it."""
        self.panel._select(segment_id)
        self.visited = segment_id
        box = self._box(segment_id)
        if box is not None:
            focus(self.viewer, self.layer, self.panel.plane, box)

    def mark_reviewed(self) -> None:
        ids = self.panel.targets()
        if not ids:
            show_warning("Pick a segment first (J selects the next one to review)")
            return
        self.panel.state.set_reviewed(ids, True)
        self.next_segment()

    def unmark_reviewed(self) -> None:
        ids = self.panel.targets()
        if not ids:
            show_warning("Pick a segment first")
            return
        self.panel.state.set_reviewed(ids, False)
        edited = [i for i in ids if i in reviewed_ids(self.plane_table())]
        if edited:
            self.note.setText(f"edited segments stay reviewed: {', '.join(map(str, edited))}")

    def _box(self, segment_id: int) -> tuple[int, int, int, int] | None:
        return segment_box(self.panel.state.plane(self.panel.plane), segment_id)

    def _key(self, method: str) -> None:
        if self.layer is None or self.panel.state is None:
            show_warning("Select a Labels layer to refine first")
            return
        getattr(self, method)()

    def close_queue(self) -> None:
        self.set_layer(None)


def segment_box(plane, segment_id: int) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of a segment in a plane, bottom/right exclusive."""
    mask = np.asarray(plane) == segment_id
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return int(rows[0]), int(columns[0]), int(rows[-1]) + 1, int(columns[-1]) + 1


def focus(viewer, layer, key: tuple, box: tuple[int, int, int, int]) -> None:
    """Centre the camera on a box of one plane of ``layer`` (data pixels) and zoom so that it
    fills the view but for a margin (at least :data:`MIN_VIEW` pixels across)."""
    top, left, bottom, right = box
    half = np.maximum([(bottom - top) / 2, (right - left) / 2], MIN_VIEW / 2) * (1 + 2 * MARGIN)
    middle = np.array([(top + bottom) / 2, (left + right) / 2]) - 0.5  # pixel centres at integers
    corners = [(*key, *(middle - half)), (*key, *(middle + half)), (*key, *middle)]
    world = np.zeros((3, viewer.dims.ndim))
    world[:, viewer.dims.ndim - layer.ndim :] = [layer.data_to_world(c) for c in corners]
    displayed = list(viewer.dims.displayed)
    camera = viewer_camera(viewer)
    camera.center = tuple(world[2, displayed])
    extent = np.abs(world[1] - world[0])[displayed[-2:]]
    viewbox = np.asarray(canvas_size(viewer), dtype=float)
    camera.zoom = float(np.min(viewbox / np.maximum(extent, 1e-9)))


def viewer_camera(viewer):
    """``viewer.scene.camera`` (napari >= 0.9; ``viewer.camera`` before, deprecated since)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def canvas_size(viewer) -> tuple[int, int]:
    """(height, width) of the canvas in screen pixels (``viewer.canvas``; ``_canvas_size`` in older napari)."""
    canvas = getattr(viewer, "canvas", None)
    return tuple(canvas.size) if canvas is not None else tuple(viewer._canvas_size)
