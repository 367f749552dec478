"""The refinement panel: correct the segments of the selected Labels layer.

It follows the active Labels layer (and keeps its target while another kind of layer is
selected). The *current* segment is the layer's selected label (napari's picker or our list sets
it); the *selection* (a list, for merge, reassign and delete) is built with "Add" / A or Shift+click
in pick mode. Every action is one call in :mod:`.actions` and one napari undo step.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QWidget,
)

from napari_odise.errors import UserError

from . import actions
from .failures import report
from .gl_compat import guard_triton
from .overlays import DERIVED_KEY
from .selection_outline import SelectionOutline
from .planes import current_plane, labels_shape
from .proposal_picker import ProposalPicker
from .proxies import unwrap
from .review_queue import ReviewQueue
from .scrolling import scrolling_layout
from .session import Session
from .shortcuts import SHORTCUTS, LayerKeys, help_text

_USER = Qt.ItemDataRole.UserRole


class RefineWidget(QWidget):
    def __init__(self, napari_viewer):
        super().__init__()
        guard_triton()  # before anything imports PyTorch's compiler stack (see gl_compat)
        self.viewer = unwrap(napari_viewer)  # the real viewer behind the Plugins menu's proxy
        self.session = Session.of(self.viewer)
        self.layer: Labels | None = None
        self.state = None  # the SegmentationLayer of ``layer``
        self.selection: list[int] = []
        self._outline = SelectionOutline(self.viewer)
        self.review = ReviewQueue(self)
        self.last_scores: dict[int, float] = {}
        self._keys = LayerKeys(self._shortcut)
        self._rescore_worker = None
        self._listed = None
        self._previous = 0  # the current segment before the latest one (napari's picker moves it first)
        self._current = 0
        self.proposals = ProposalPicker(self)

        self.target = QLabel("Select a Labels layer (e.g. one made by the Segment widget)")
        self.target.setWordWrap(True)
        self.current = QLabel("")
        self.current.setWordWrap(True)
        pick = QPushButton("Pick")
        pick.setToolTip(
            "napari's picker: click a segment to make it current; Shift+click adds it to the selection"
        )
        pick.clicked.connect(self.pick_mode)

        self.selection_list = QListWidget()
        self.selection_list.setMaximumHeight(90)
        add, clear = QPushButton("Add current (A)"), QPushButton("Clear (Shift+A)")
        add.clicked.connect(self.add_current_to_selection)
        clear.clicked.connect(self.clear_selection)

        self.category_filter = QLineEdit(placeholderText="search categories...")
        self.category_filter.textChanged.connect(self._filter_categories)
        self.category_list = QListWidget()
        self.category_list.setMinimumHeight(100)

        self.min_size = QSpinBox(minimum=1, maximum=10**7, value=64)
        self.min_size.setToolTip("Remove small: connected parts smaller than this many pixels")
        self.adopt_best = QCheckBox("Re-score may change the category (take the best)")
        grid = QGridLayout()
        descriptions = dict(SHORTCUTS.values())
        for i, (label, method) in enumerate(
            [
                ("Reassign (R)", "reassign"),
                ("Merge (G)", "merge"),
                ("Split (S)", "split"),
                ("Delete (D)", "delete"),
                ("Fill holes (H)", "fill_holes"),
                ("Remove small (K)", "remove_small"),
                ("New segment (N)", "new_segment"),
                ("Re-score (C)", "rescore"),
            ]
        ):
            button = QPushButton(label)
            button.setToolTip(descriptions[method])
            button.clicked.connect(partial(self._shortcut, method))
            grid.addWidget(button, i // 2, i % 2)
        small = QHBoxLayout()
        small.addWidget(QLabel("min size"))
        small.addWidget(self.min_size)
        self.scores = QLabel("")
        self.scores.setWordWrap(True)
        self.help = QLabel(help_text())
        self.help.setWordWrap(True)
        self.setToolTip(help_text())

        layout = scrolling_layout(self)
        layout.addWidget(self.target)
        row = QHBoxLayout()
        row.addWidget(self.current, 1)
        row.addWidget(pick)
        layout.addLayout(row)
        layout.addWidget(self.review)
        layout.addWidget(QLabel("Selection"))
        layout.addWidget(self.selection_list)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addWidget(clear)
        layout.addLayout(row)
        layout.addWidget(QLabel("Category"))
        layout.addWidget(self.category_filter)
        layout.addWidget(self.category_list)
        layout.addLayout(grid)
        layout.addLayout(small)
        layout.addWidget(self.adopt_best)
        layout.addWidget(self.scores)
        layout.addWidget(self.proposals)
        layout.addWidget(self.help)
        layout.addStretch()

        self.viewer.layers.selection.events.active.connect(self._on_active_layer)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.dims.events.current_step.connect(self._show_current)
        self._on_active_layer()

    # --- target layer --------------------------------------------------------------------------
    def set_layer(self, layer: Labels | None) -> None:
        """Act on ``layer`` (None: on nothing); keys and picker move with it."""
        layer = unwrap(layer)
        if layer is self.layer:
            return
        if self.layer is not None:
            self.layer.events.selected_label.disconnect(self._show_current)
            self.state.table_changed.disconnect(self._on_table_changed)
            if self._on_click in self.layer.mouse_drag_callbacks:
                self.layer.mouse_drag_callbacks.remove(self._on_click)
            self._keys.unbind()
        self.proposals.set_layer(None)
        self.layer, self.state = layer, None
        self.selection = []
        self.review.set_layer(None)
        if layer is None:
            self.target.setText("Select a Labels layer (e.g. one made by the Segment widget)")
        else:
            self.state = self.session.state(layer)
            layer.events.selected_label.connect(self._show_current)
            self.state.table_changed.connect(self._on_table_changed)
            layer.mouse_drag_callbacks.append(self._on_click)
            self.review.set_layer(layer)
            self._keys.bind(layer)
            self.proposals.set_layer(layer)
            self.target.setText(f"Refining '{layer.name}' ({len(self.state.vocabulary)} categories)")
        self._fill_categories()
        self._on_table_changed()

    def _on_active_layer(self, event=None) -> None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Labels) and DERIVED_KEY not in active.metadata:
            self.set_layer(active)

    def _on_layer_removed(self, event) -> None:
        if event.value is self.layer:
            self.set_layer(None)

    @property
    def plane(self):
        return current_plane(self.layer, self.viewer.dims.point)

    # --- what is shown -------------------------------------------------------------------------
    def current_id(self) -> int:
        return int(self.layer.selected_label) if self.layer is not None else 0

    def targets(self) -> list[int]:
        """The selection, or else the current segment."""
        state = self.state
        chosen = [i for i in self.selection if state.present(i)]
        if not chosen and state.present(self.current_id()):
            chosen = [self.current_id()]
        return chosen

    def _on_table_changed(self) -> None:
        if self.layer is None:
            self.selection_list.clear()
            self.current.setText("")
            self._outline.close()
            return
        state = self.state
        self.selection = [i for i in self.selection if state.present(i)]
        self.selection_list.clear()
        for segment_id in self.selection:
            self.selection_list.addItem(self._describe(segment_id))
        self.target.setText(f"Refining '{self.layer.name}' ({len(state.vocabulary)} categories)")
        if self._listed is not state.vocabulary:
            self._fill_categories()
        self._show_current()
        self._outline.show(self.layer, self.selection)
        self.review.refresh()

    def _show_current(self, event=None) -> None:
        if self.layer is not None and self.current_id() != self._current:
            self._previous, self._current = self._current, self.current_id()
        if self.layer is not None:
            self.current.setText("Current: " + self._describe(self.current_id()))

    def _describe(self, segment_id: int) -> str:
        table = self.state.table
        row = table[table["id"] == segment_id]
        if row.empty:
            if segment_id in self.state.pending:
                category_id = self.state.rows[segment_id].category_id
                name = (
                    self.state.vocabulary.by_id(category_id).name
                    if category_id in self.state.vocabulary.ids
                    else "?"
                )
                return f"#{segment_id} {name} (new: paint it with the brush)"
            return f"#{segment_id} (no pixels)"
        r = row.iloc[0]
        kind = "thing" if r["isthing"] else "stuff"
        score = "no score" if np.isnan(r["score"]) else f"score {r['score']:.2f}"
        return f"#{segment_id} {r['category']} ({kind}), {score}, {r['area']} px, {r['source']}"

    def _fill_categories(self) -> None:
        self.category_list.clear()
        self._listed = self.state.vocabulary if self.layer is not None else None
        if self.layer is None:
            return
        for category in self.state.vocabulary:
            item = QListWidgetItem(f"{category.name}  ({'thing' if category.isthing else 'stuff'})")
            item.setData(_USER, category.id)
            self.category_list.addItem(item)
        self._filter_categories(self.category_filter.text())

    def _filter_categories(self, text: str) -> None:
        needle = text.strip().lower()
        first_visible = None
        for i in range(self.category_list.count()):
            item = self.category_list.item(i)
            item.setHidden(bool(needle) and needle not in item.text().lower())
            if first_visible is None and not item.isHidden():
                first_visible = item
        if needle and first_visible is not None:
            self.category_list.setCurrentItem(first_visible)  # typing + R reassigns to the best match

    def chosen_category(self):
        item = self.category_list.currentItem()
        if item is None or item.isHidden():
            return None
        return self.state.vocabulary.by_id(item.data(_USER))

    def select_category(self, name: str) -> None:
        """Make ``name`` the chosen category in the list."""
        wanted = self.state.vocabulary.by_name(name).id
        for i in range(self.category_list.count()):
            if self.category_list.item(i).data(_USER) == wanted:
                self.category_list.item(i).setHidden(False)
                self.category_list.setCurrentRow(i)

    # --- picking -------------------------------------------------------------------------------
    def pick_mode(self) -> None:
        if self.layer is not None:
            self.layer.mode = "pick"

    def _on_click(self, layer, event) -> None:
        if layer.mode == "pick" and "Shift" in event.modifiers:
            value = layer.get_value(
                event.position,
                view_direction=event.view_direction,
                dims_displayed=event.dims_displayed,
                world=True,
            )
            if value:
                if not self.selection:  # like napari's layer list: Shift+click adds to the current one
                    current = self.current_id() if self.current_id() != int(value) else self._previous
                    self.add_to_selection(current)
                self.add_to_selection(int(value))
        else:
            self.proposals.click(layer, event)

    def add_to_selection(self, segment_id: int) -> None:
        if segment_id not in self.selection and self.state.present(segment_id):
            self.selection.append(segment_id)
            self._on_table_changed()

    def add_current_to_selection(self) -> None:
        self.add_to_selection(self.current_id())

    def clear_selection(self) -> None:
        self.selection = []
        self._on_table_changed()

    # --- actions -------------------------------------------------------------------------------
    def _shortcut(self, method: str) -> None:
        """Run a panel action by name (buttons and keys); errors become notifications."""
        if self.layer is None:
            show_warning("Select a Labels layer to refine first")
            return
        try:
            getattr(self, method)()
        except UserError as error:
            show_error(f"{method.replace('_', ' ')}: {error}")

    def _need_targets(self, at_least: int = 1) -> list[int] | None:
        ids = self.targets()
        if len(ids) < at_least:
            show_warning(
                "Pick a segment first (Pick, then click it)"
                if at_least == 1
                else "Add at least two segments to the selection (A or Shift+click in pick mode)"
            )
            return None
        return ids

    def _select(self, segment_id: int) -> None:
        self.layer.selected_label = segment_id
        self._show_current()

    def reassign(self) -> None:
        category = self.chosen_category()
        if category is None:
            show_warning("Choose a category in the list first")
            return
        ids = self._need_targets()
        if ids:
            selection = list(self.selection)  # the edit's table update drops the old ids from it
            renamed = dict(zip(sorted(ids), actions.reassign(self.state, self.plane, ids, category)))
            self.selection = [renamed.get(i, i) for i in selection]
            self._select(renamed.get(self.current_id(), renamed[ids[0]]))
            self._on_table_changed()

    def merge(self) -> None:
        ids = [i for i in self.selection if self.state.present(i)]
        if len(ids) < 2:
            show_warning("Add at least two segments to the selection (A or Shift+click in pick mode)")
            return
        merged = actions.merge(self.state, self.plane, ids)
        self.selection = [merged]  # selected still, as after any other edit
        self._select(merged)
        self._on_table_changed()

    def split(self) -> None:
        ids = self._need_targets()
        if ids:
            parts = actions.split(
                self.state, self.plane, self.current_id() if self.current_id() in ids else ids[0]
            )
            self.scores.setText(
                f"split into {len(parts)} segments" if len(parts) > 1 else "already one connected part"
            )

    def delete(self) -> None:
        ids = self._need_targets()
        if ids:
            actions.delete(self.state, self.plane, ids)
            self.selection = []
            self._on_table_changed()

    def fill_holes(self) -> None:
        ids = self._need_targets()
        if ids:
            actions.fill_holes(self.state, self.plane, ids[0])

    def remove_small(self) -> None:
        actions.remove_small(self.state, self.plane, self.min_size.value())

    def new_segment(self) -> None:
        category = self.chosen_category()
        if category is None:
            show_warning("Choose the new segment's category in the list first")
            return
        actions.new_segment(self.state, category)
        self._show_current()

    # --- re-scoring (model work: in a worker) ----------------------------------------------------
    def rescore(self) -> None:
        ids = self._need_targets()
        if not ids or self._rescore_worker is not None:
            return
        state, key = self.state, self.plane
        segment_id = self.current_id() if self.current_id() in ids else ids[0]
        image = state.image_layer if state.image_layer in self.viewer.layers else self._matching_image()
        if image is None:
            show_error("Re-score needs the image: open the image this layer segments (same size)")
            return
        work = self.session.rescore_work(state, key, segment_id, image)
        worker = create_worker(work, _start_thread=False, _connect={"errored": _show_rescore_error})
        worker.returned.connect(partial(self._on_rescored, state, key, segment_id))
        worker.finished.connect(self._on_rescore_finished)
        self._rescore_worker = worker
        self.scores.setText("re-scoring...")
        worker.start()

    def _on_rescored(self, state, key, segment_id, scores: dict[int, float]) -> None:
        self.last_scores = scores
        best = sorted(scores.items(), key=lambda kv: -kv[1])[:3]
        names = ", ".join(f"{state.vocabulary.by_id(c).name} {p:.2f}" for c, p in best)
        self.scores.setText(f"model: {names}")
        if state.layer in self.viewer.layers and state.present(segment_id):
            new_id = actions.apply_scores(state, key, segment_id, scores, self.adopt_best.isChecked())
            if state.layer is self.layer:
                self._select(new_id)

    def _on_rescore_finished(self) -> None:
        self._rescore_worker = None

    def _matching_image(self):
        for layer in self.viewer.layers:
            if isinstance(layer, Image) and labels_shape(layer) == tuple(self.layer.data.shape):
                return layer
        return None

    def closeEvent(self, event) -> None:
        self.set_layer(None)
        super().closeEvent(event)


def _show_rescore_error(error: Exception) -> None:
    report(error, "re-score")
