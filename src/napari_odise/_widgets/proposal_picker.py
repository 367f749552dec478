"""Model proposals at a click, in the Refine panel: list the query masks covering a pixel
(:mod:`napari_odise.proposals`), browse them with a live outline, and put the chosen one in place
of the segment under the click as one undoable edit.

A plain click in pick mode (or Q at the cursor) lists them; Down/Up browse (the shown one is
outlined on the canvas); Enter replaces the segment under the click with it (Shift+Enter: fills
only unlabeled pixels, other segments keep theirs); Escape closes the list. While no list is
open, Enter and Escape keep napari's own meaning (complete / reset a polygon).

What a click reads (the query mask index and the class probabilities under the layer's
vocabulary) is built in a napari worker as soon as the panel follows a layer with model results,
again after a model run or vocabulary change, and for the plane shown: the GUI thread never
builds it. A click before it is ready says "preparing proposals..." and lists when it is.
"""

from __future__ import annotations

import inspect

import numpy as np
from napari.layers import Labels
from napari.qt.threading import create_worker
from napari.utils.key_bindings import coerce_keybinding
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QListWidget, QPushButton, QVBoxLayout, QWidget

from napari_odise import proposals
from napari_odise.errors import UserError

from .failures import report
from .planes import current_plane, plane_axes
from .selection_outline import insert_overlay
from .shortcuts import LayerKeys

# key -> (picker method, description): bound on the refined layer the way shortcuts.py binds
PROPOSAL_KEYS: dict[str, tuple[str, str]] = {
    "Q": ("propose_at_cursor", "list the model's proposals at the cursor"),
    "Down": ("next_proposal", "next proposal (outlined on the canvas)"),
    "Up": ("previous_proposal", "previous proposal"),
    "Enter": ("accept", "replace the segment under the click with the shown proposal"),
    "Shift-Enter": ("accept_unlabeled", "the same, filling only unlabeled pixels"),
    "Escape": ("cancel", "close the proposals"),
}
_WHILE_OPEN = {"next_proposal", "previous_proposal", "accept", "accept_unlabeled", "cancel"}
PREVIEW_COLOR = (0.0, 1.0, 1.0, 1.0)  # cyan: the selection outline is yellow
PREVIEW_WIDTH = 2


def proposal_help() -> str:
    return "Proposals: " + "; ".join(f"{key}: {text}" for key, (_, text) in PROPOSAL_KEYS.items())


class ProposalPreview:
    """The shown proposal's outline, in a Labels layer just above the segments. The layer is kept
    (hidden) between lists: adding and removing a napari layer costs far more than a click."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.layer: Labels | None = None

    def show(self, labels: Labels, key: tuple, mask: np.ndarray) -> None:
        data = np.zeros(labels.data.shape, dtype=np.uint8)
        (data[key] if key else data)[outline(mask, PREVIEW_WIDTH)] = 1
        if self.layer is None or self.layer not in self.viewer.layers:
            self.layer = insert_overlay(self.viewer, labels, data, "proposal", PREVIEW_COLOR)
        else:
            self.layer.data = data
            if not self.layer.visible:
                self.layer.visible = True  # setting it again would redraw again

    def hide(self) -> None:
        if self.layer is not None and self.layer in self.viewer.layers:
            self.layer.visible = False

    def close(self) -> None:
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = None


def outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The mask's pixels within ``width`` (4-neighbour steps) of its edge: drawn directly, without
    napari's contour filter, so browsing stays fast on large images."""
    inner = mask
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return mask & ~inner


class ProposalPicker(QWidget):
    """The proposals part of the Refine panel; ``panel`` is the :class:`RefineWidget`."""

    def __init__(self, panel):
        super().__init__()
        self.panel = panel
        self.viewer = panel.viewer
        self.layer: Labels | None = None
        self.proposals: list[proposals.Proposal] = []
        self.shown = -1
        self.at: tuple[tuple, int, int] | None = None  # (plane key, y, x) the list is for
        self._result = None
        self._predictor = None
        self._vocabulary = None
        self._state = None  # the layer's SegmentationLayer, whose changes start a build
        self._worker = None  # the build in progress (one at a time)
        self._building = None  # (result, vocabulary) it builds
        self._failed = None  # (result, vocabulary) whose build raised: not tried again
        self._waiting: tuple[tuple, int, int] | None = None  # a click to list once the build is done
        self._preview = ProposalPreview(self.viewer)
        self._keys = LayerKeys(self._key, PROPOSAL_KEYS)

        self.list_on_click = QCheckBox("List proposals on a click in pick mode")
        self.list_on_click.setChecked(True)
        self.only_unlabeled = QCheckBox("Fill only unlabeled pixels (keep other segments)")
        self.status = QLabel("Click a segment in pick mode, or press Q over it")
        self.status.setWordWrap(True)
        self.list = QListWidget()
        self.list.setMaximumHeight(120)
        self.list.currentRowChanged.connect(self._on_row)
        replace, cancel = QPushButton("Replace (Enter)"), QPushButton("Cancel (Esc)")
        replace.clicked.connect(self.accept)
        cancel.clicked.connect(self.cancel)
        self.setToolTip(proposal_help())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Model proposals (Q at the cursor; Down/Up, Enter, Esc)"))
        layout.addWidget(self.list_on_click)
        layout.addWidget(self.status)
        layout.addWidget(self.list)
        row = QHBoxLayout()
        row.addWidget(replace)
        row.addWidget(cancel)
        layout.addLayout(row)
        layout.addWidget(self.only_unlabeled)
        self.viewer.dims.events.current_step.connect(self.prepare_shown)

    # --- following the panel's layer -------------------------------------------------------------
    def set_layer(self, layer: Labels | None) -> None:
        if layer is self.layer:
            return
        self.cancel()
        self._preview.close()
        if self.layer is not None:
            self.layer.events.mode.disconnect(self._on_mode)
            self._keys.unbind()
        if self._state is not None:
            self._state.table_changed.disconnect(self.prepare_shown)
        self.layer, self._state = layer, None
        if layer is not None:
            layer.events.mode.connect(self._on_mode)
            self._keys.bind(layer)
            self._state = self.panel.state
            self._state.table_changed.connect(self.prepare_shown)  # new results, new vocabulary
            self.prepare_shown()

    def _on_mode(self, event=None) -> None:
        if self.layer is not None and self.layer.mode not in ("pick", "pan_zoom"):
            self.cancel()  # painting: Enter and Escape are napari's polygon keys again

    # --- building in the background ----------------------------------------------------------------
    def prepare_shown(self, *_) -> None:
        """Start building the shown plane's proposals (unless built, or being built)."""
        if self.layer is not None and self.layer.data.ndim >= 2:
            self._prepare(current_plane(self.layer, self.viewer.dims.point))

    def _prepare(self, key: tuple) -> str:
        """"ready" (or nothing to build: listing says why), "building" or "failed" for plane ``key``;
        starts the build when none runs."""
        state = self.panel.state
        result = None if state is None else state.model_results.get(key)
        predictor = None if result is None else self.panel.session.loaded_predictor(state)
        if predictor is None or result.encoded is None:
            return "ready"
        vocabulary = state.vocabulary
        if proposals.prepared(predictor, result, vocabulary):
            return "ready"
        if self._failed is not None and self._failed[0] is result and self._failed[1] == vocabulary:
            return "failed"
        if self._worker is None:  # one build at a time: when it ends, the shown plane is checked again
            self._building = (result, vocabulary)
            worker = create_worker(proposals.prepare, predictor, result, vocabulary, _start_thread=False)
            worker.errored.connect(self._on_build_error)
            worker.finished.connect(self._on_built)
            self._worker = worker
            worker.start()
        return "building"

    def _on_build_error(self, error: Exception) -> None:
        self._failed, self._waiting = self._building, None
        self.status.setText("The proposals could not be prepared")
        report(error, "proposals")

    def _on_built(self) -> None:
        self._worker = self._building = None
        waiting, self._waiting = self._waiting, None
        if waiting is not None and self.layer is not None:
            self.propose(*waiting)  # the click made while building (it builds again if things changed)
        else:
            self.prepare_shown()  # the plane or the results may have changed meanwhile

    @property
    def preparing(self) -> bool:
        """Whether a build runs in the background."""
        return self._worker is not None

    # --- listing -----------------------------------------------------------------------------------
    def click(self, layer, event) -> None:
        """A plain click in pick mode lists the proposals there (when the box is checked)."""
        if layer.mode == "pick" and not event.modifiers and self.list_on_click.isChecked():
            self.propose_at_world(event.position)

    def propose_at_cursor(self) -> None:
        self.propose_at_world(self.viewer.cursor.position)

    def propose_at_world(self, position) -> None:
        """List the proposals at a world position (the click's, or the cursor's)."""
        where = self._pixel(position)
        if where is None:
            self._message("Point at a pixel of the image (2-D view)")
            return
        self.propose(*where)

    def propose(self, key: tuple, y: int, x: int) -> None:
        """List the proposals at pixel (y, x) of plane ``key`` and outline the first."""
        state = self.panel.state
        self._clear()  # the outline stays until the next one is drawn (no flicker)
        result = state.model_results.get(key)
        if result is None or result.encoded is None:
            self._message("No model proposals here: this layer (or plane) was not segmented by the model in this session")
            return
        if result.label_map.shape != state.plane(key).shape:
            self._message("No model proposals here: the layer's size differs from the model's result")
            return
        predictor = self.panel.session.loaded_predictor(state)
        if predictor is None:
            self._message("No model proposals: the model that made this layer is not loaded (run Segment again)")
            return
        built = self._prepare(key)
        if built != "ready":
            self._message(
                "preparing proposals... (they are listed when ready)" if built == "building"
                else "The proposals could not be prepared here (see the error shown)"
            )
            self._waiting = (key, y, x) if built == "building" else None
            return
        try:
            found = proposals.proposals_at(predictor, result, y, x, state.vocabulary)
        except UserError as error:
            self._message(str(error))
            return
        self._result, self._predictor, self.at = result, predictor, (key, y, x)
        self._vocabulary = state.vocabulary
        self.proposals = found
        self.list.blockSignals(True)
        for k, p in enumerate(found, 1):
            kind = "thing" if p.category.isthing else "stuff"
            self.list.addItem(f"{k}. {p.category.name} ({kind})  score {p.score:.2f}  {p.area:,} px")
            self.list.item(k - 1).setToolTip(
                f"query {p.query}: class score {p.score:.3f} x mask quality {p.quality:.3f} = {p.rank:.3f}"
            )
        self.list.blockSignals(False)
        if not found:
            self._message(f"No model proposals cover pixel ({y}, {x})")
            return
        self.status.setText(
            f"{len(found)} proposal{'s' if len(found) > 1 else ''} at ({y}, {x}): "
            "Down/Up browse, Enter replaces, Esc closes"
        )
        self.show_proposal(0)

    def _pixel(self, position) -> tuple[tuple, int, int] | None:
        """(plane key, y, x) of a world position on the refined layer, None outside it."""
        layer = self.layer
        if layer is None or self.viewer.dims.ndisplay != 2:
            return None
        ndim = layer.data.ndim
        if tuple(self.viewer.dims.displayed[-2:]) != (self.viewer.dims.ndim - 2, self.viewer.dims.ndim - 1):
            return None  # the image's rows and columns are not the axes shown
        coords = np.round(np.asarray(layer.world_to_data(np.asarray(position, dtype=float)))[-ndim:]).astype(int)
        if np.any(coords < 0) or np.any(coords >= np.asarray(layer.data.shape)):
            return None
        leading = plane_axes(tuple(layer.data.shape))
        return tuple(int(c) for c in coords[:leading]), int(coords[-2]), int(coords[-1])

    # --- browsing ----------------------------------------------------------------------------------
    def show_proposal(self, k: int) -> None:
        """Make proposal ``k`` the shown one: highlighted in the list, outlined on the canvas."""
        if not self.proposals:
            return
        if not proposals.prepared(self._predictor, self._result, self._vocabulary):
            self.propose(*self.at)  # its index was dropped since (other images): built again, off this thread
            return
        self.shown = k % len(self.proposals)
        self.list.blockSignals(True)
        self.list.setCurrentRow(self.shown)
        self.list.blockSignals(False)
        key = self.at[0]
        mask = proposals.proposal_mask(self._predictor, self._result, self.proposals[self.shown])
        self._preview.show(self.layer, key, mask)

    def _on_row(self, row: int) -> None:
        if 0 <= row < len(self.proposals) and row != self.shown:
            self.show_proposal(row)

    def next_proposal(self) -> None:
        self.show_proposal(self.shown + 1)

    def previous_proposal(self) -> None:
        self.show_proposal(self.shown - 1)

    # --- accepting ---------------------------------------------------------------------------------
    def accept(self, only_unlabeled: bool | None = None) -> int | None:
        """Replace the segment under the listed pixel with the shown proposal (one undo step);
        returns the new segment's id and selects it."""
        if not self.proposals or self.shown < 0:
            return None
        only = self.only_unlabeled.isChecked() if only_unlabeled is None else only_unlabeled
        state, (key, y, x) = self.panel.state, self.at
        if (
            state.vocabulary != self._vocabulary
            or state.model_results.get(key) is not self._result
            or not proposals.prepared(self._predictor, self._result, self._vocabulary)
        ):
            self.propose(key, y, x)  # re-labelled or re-segmented since: list what the model says now
            self.status.setText("The segmentation changed since the list was made; listed again: " + self.status.text())
            return None
        chosen = self.proposals[self.shown]
        mask = proposals.proposal_mask(self._predictor, self._result, chosen)
        state.sync()
        old_table = state.plane_table(key)
        try:
            new_map, new_table = proposals.accept(
                np.array(state.plane(key)), old_table, mask, chosen.category, chosen.score, (y, x),
                only_unlabeled=only, vocabulary=state.vocabulary,
            )
        except UserError as error:
            show_error(f"proposal: {error}")
            return None
        added = sorted(set(new_table["id"].tolist()) - set(old_table["id"].tolist()))
        fresh = state.commit(key, new_map, new_table, old_table)
        self.cancel()
        new_id = fresh.get(added[0], added[0]) if added else 0
        if new_id:
            self.layer.selected_label = new_id
        self.status.setText(f"Replaced with {chosen.category.name} (#{new_id}); Ctrl+Z undoes it")
        return new_id

    def accept_unlabeled(self) -> int | None:
        return self.accept(only_unlabeled=True)

    def cancel(self) -> None:
        """Close the list (and forget a click waiting for the build); the outline goes."""
        self._clear()
        self._waiting = None
        self._preview.hide()

    def _clear(self) -> None:
        self.proposals, self.shown, self.at = [], -1, None
        self._result = self._predictor = self._vocabulary = None
        self.list.clear()

    # --- keys --------------------------------------------------------------------------------------
    def _key(self, method: str) -> None:
        if method in _WHILE_OPEN and not self.proposals and not (method == "cancel" and self._waiting):
            self._forward(method)
            return
        getattr(self, method)()

    def _forward(self, method: str) -> None:
        """No list open: the key does what napari binds it to on Labels layers (if anything)."""
        key = next(k for k, (m, _) in PROPOSAL_KEYS.items() if m == method)
        binding = coerce_keybinding(key)
        for cls in type(self.layer).__mro__:
            func = vars(cls).get("class_keymap", {}).get(binding)
            if callable(func):
                out = func(self.layer)
                if inspect.isgenerator(out):
                    next(out, None)
                return

    def _message(self, text: str) -> None:
        self.cancel()
        self.status.setText(text)

    def close_picker(self) -> None:
        self.set_layer(None)
