"""The Segment widget: pick an image, a model and a vocabulary, then Run (cancellable).

UI and worker plumbing only: the work is :meth:`Session.segment_work` run by a napari generator
``thread_worker`` (progress reports are its yields); results reach the layers only through
``worker.returned``, so a cancelled or failed run leaves the layers as they were. A vocabulary edit
re-labels the chosen image's layer from the cached model tensors (no backbone run), after any
running job.
"""

from __future__ import annotations

from functools import partial

from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from napari_odise.stack_linking import DEFAULT_THRESHOLD
from napari_odise.vocabulary import VocabularyError

from .failures import report
from .gl_compat import guard_triton
from .job import Job, Progress
from .overlays import NamesOverlay, SemanticOverlay
from .planes import all_planes, current_plane, labels_shape
from .linked_planes import recorded_rule, spanning_ids
from .model_fields import ModelFields
from .proxies import unwrap
from .scrolling import scrolling_layout
from .session import MODELS, ModelChoice, Session
from .vocabulary_warmer import VocabularyWarmer
from .vocabulary_widget import VocabularyWidget
from .weights_check import missing_advice

CHECKPOINT_ITEM = "checkpoint file..."
CURRENT_PLANE, ALL_PLANES = "current plane", "all planes"


class SegmentWidget(QWidget):
    def __init__(self, napari_viewer):
        super().__init__()
        guard_triton()  # before anything imports PyTorch's compiler stack (see gl_compat)
        self.viewer = unwrap(napari_viewer)  # the real viewer behind the Plugins menu's proxy
        self.session = Session.of(self.viewer)
        self._job: Job | None = None
        self._worker = None
        self._relabel_worker = None
        self._relabel_pending = False
        self._succeeded = False  # the last run put its results into a layer
        self._stage = ""  # the running job's latest progress stage
        self._overlays: dict = {}  # by the Labels layer's unique_id

        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image to segment: 2-D RGB or grayscale, or a stack of planes")
        self.image_combo.currentTextChanged.connect(self._update_planes)
        # the editor's vocabulary is the one shown: an image segmented earlier catches up when chosen
        self.image_combo.currentTextChanged.connect(self._on_vocabulary_changed)
        form.addRow("Image", self.image_combo)
        self.planes_combo = QComboBox()
        self.planes_combo.addItems([CURRENT_PLANE, ALL_PLANES])
        self.planes_combo.setToolTip("For stacks: segment the plane on screen, or every plane in turn")
        form.addRow("Planes", self.planes_combo)
        self.link_box = QCheckBox("Link objects across planes")
        self.link_box.setChecked(True)
        self.link_box.setToolTip(
            "For stacks: after all planes are segmented, an object keeps one id (and colour) through "
            "the stack where its masks in neighbouring planes overlap enough (same category)"
        )
        self.link_threshold = QDoubleSpinBox()
        self.link_threshold.setRange(0.0, 1.0)
        self.link_threshold.setSingleStep(0.05)
        self.link_threshold.setValue(DEFAULT_THRESHOLD)
        self.link_threshold.setPrefix("min IoU ")
        self.link_threshold.setToolTip("How much two planes' masks must overlap (intersection over union) to link")
        self.link_box.toggled.connect(self.link_threshold.setEnabled)
        linking = QHBoxLayout()
        linking.addWidget(self.link_box)
        linking.addWidget(self.link_threshold)
        form.addRow("", linking)
        self.model_fields = ModelFields(form, [*MODELS, *self.session.checkpoints, CHECKPOINT_ITEM])
        self.model_combo, self.device_combo, self.precision_combo, self.settings_combo = self.model_fields.combos
        self.model_combo.activated.connect(self._maybe_pick_checkpoint)
        for combo in self.model_fields.combos:
            combo.currentTextChanged.connect(self._store_choice)
        self.weights_note = QLabel("")  # what the chosen model lacks, before Run
        self.weights_note.setWordWrap(True)
        self.weights_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.use_tiny = QPushButton("Use 'tiny' (no weights needed)")
        self.use_tiny.clicked.connect(lambda: self.model_combo.setCurrentText("tiny"))
        form.addRow(self.weights_note)
        form.addRow(self.use_tiny)
        self.model_combo.currentTextChanged.connect(self._check_weights)
        self._check_weights()

        self.vocabulary_widget = VocabularyWidget(self.session.vocabulary)
        self.warmer = VocabularyWarmer(self.session, self.choice)  # in the vocabulary box, at its foot
        self.vocabulary_widget.layout().addWidget(self.warmer)
        self.names_box = QCheckBox("Show category names on the segments")
        self.names_box.toggled.connect(self._toggle_names)
        self.semantic_box = QCheckBox("Also add a semantic layer (one label per category)")

        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = scrolling_layout(self)
        layout.addLayout(form)
        layout.addWidget(self.vocabulary_widget)
        layout.addWidget(self.names_box)
        layout.addWidget(self.semantic_box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch()

        for emitter in (
            self.viewer.layers.events.inserted,
            self.viewer.layers.events.removed,
            self.viewer.layers.events.reordered,
        ):
            emitter.connect(self._refresh_images)
        self.session.vocabulary.changed.connect(self._on_vocabulary_changed)
        self.session.checkpoints.added.connect(self._list_checkpoint)
        self._refresh_images()

    # --- choices -------------------------------------------------------------------------------
    def selected_image(self) -> Image | None:
        name = self.image_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401
        return layer if isinstance(layer, Image) else None

    def choice(self) -> ModelChoice:
        return self.model_fields.choice()

    def _store_choice(self, *args) -> None:
        self.session.choice = self.choice()

    def _refresh_images(self, event=None) -> None:
        current = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        elif (
            event is not None and getattr(event, "type", "") == "inserted" and isinstance(event.value, Image)
        ):
            self.image_combo.setCurrentText(event.value.name)  # a newly opened image is the likely target
        self.image_combo.blockSignals(False)
        self._update_planes()

    def _update_planes(self, *args) -> None:
        image = self.selected_image()
        stack = image is not None and len(labels_shape(image)) > 2
        self.planes_combo.setEnabled(stack)
        self.link_box.setEnabled(stack)
        self.link_threshold.setEnabled(stack and self.link_box.isChecked())

    def _check_weights(self, *args) -> str | None:
        """Show what the chosen model lacks (all its files, the command that gets them)."""
        advice = missing_advice(self.model_combo.currentText())
        self.weights_note.setText(advice or "")
        self.weights_note.setVisible(advice is not None)
        self.use_tiny.setVisible(advice is not None)
        return advice

    def _maybe_pick_checkpoint(self, index: int) -> None:
        if self.model_combo.itemText(index) != CHECKPOINT_ITEM:
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "ODISE checkpoint (released, re-saved or fine-tuned)", filter="Checkpoints (*.pth *.pt *.safetensors)"
        )
        if path:
            self.model_combo.setCurrentText(self.session.add_checkpoint(path))
        else:
            self.model_combo.setCurrentIndex(0)

    def _list_checkpoint(self, path: str) -> None:
        """A checkpoint added to the session (here, or by the Fine-tune widget) becomes a choice."""
        if self.model_combo.findText(path) < 0:
            self.model_combo.insertItem(self.model_combo.findText(CHECKPOINT_ITEM), path)

    # --- running -------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._worker is not None or self._relabel_worker is not None

    def run(self) -> None:
        """Segment the chosen image (plane or planes) in a worker thread."""
        image = self.selected_image()
        if image is None:
            show_error(
                "Open an image first (File > Open Sample > napari-odise has photographs), then pick it here"
            )
            return
        try:
            vocabulary = self.session.vocabulary.require()
        except VocabularyError as error:
            show_error(str(error))
            return
        shape = labels_shape(image)
        if len(shape) < 2:
            show_error(
                f"'{image.name}' has shape {image.data.shape}: ODISE needs a 2-D image or a stack of them"
            )
            return
        if len(shape) > 2 and self.planes_combo.currentText() == ALL_PLANES:
            planes = all_planes(shape)
        else:
            planes = [current_plane(image, self.viewer.dims.point)]
        advice = self._check_weights()
        if advice is not None:
            self.status.setText("not started: the model's weights are missing (see above)")
            show_error(advice)
            return
        choice = self.choice()
        self._job = Job()
        work = self.session.segment_work(image, planes, vocabulary, choice)
        worker = create_worker(self._job.run, work, _start_thread=False, _connect={"errored": self._on_error})
        worker.yielded.connect(self._on_progress)
        link = self.link_threshold.value() if len(shape) > 2 and self.link_box.isChecked() else None
        worker.returned.connect(partial(self._on_segmented, image, vocabulary, choice, link))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._succeeded, self._stage = False, ""
        self._set_running(True, f"segmenting '{image.name}' with {choice.model}...")
        worker.start()

    def cancel(self) -> None:
        """Stop the run at the model's next progress report; no layer is added or changed. While
        the model loads (one call that cannot be interrupted) the run is dropped at once and
        the load finishes in the background, keeping the model in the pool for the next Run."""
        if self._worker is None:
            return
        self._job.cancel()
        self._worker.quit()
        self.cancel_button.setEnabled(False)
        self.status.setText("cancelling...")

    def _on_progress(self, progress: Progress) -> None:
        self._stage = progress.stage
        if progress.stage == "load":
            self.progress_bar.setRange(0, 0)  # busy: loading reports no steps (30-50 s for official)
        else:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(round(progress.fraction * 1000))
        self.status.setText(progress.text())

    def _on_segmented(self, image, vocabulary, choice, link, results) -> None:
        if results is None or image not in self.viewer.layers:
            return
        self._succeeded = True
        layer = self.session.apply_segmentation(image, results, vocabulary, choice, link=link)
        state = self.session.state(layer)
        self._add_overlays(state)
        through = f", {spanning_ids(state)} of them through several planes" if recorded_rule(state) else ""
        show_info(f"'{layer.name}': {len(state.table)} segments{through}")
        self._relabel_pending = self._vocabulary_differs()  # edited while the model ran

    def _on_error(self, error: Exception) -> None:
        report(error, "napari-odise")

    def _on_finished(self) -> None:
        cancelled = self._job is not None and self._job.cancelled and self._worker is not None
        self._worker = None
        self._relabel_worker = None
        if cancelled:
            text = "cancelled: nothing was changed"
            if self._job.running and self._stage == "load":
                text += " (the model keeps loading in the background, for the next Run)"
        else:
            text = "done" if self._succeeded else "stopped (see the notification)"
        self._set_running(False, text)
        if self._relabel_pending:
            self.relabel()

    def _set_running(self, running: bool, text: str) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running and self._worker is not None)
        if not running:
            self.progress_bar.setRange(0, 1000)  # ends the busy phase
            self.progress_bar.setValue(1000 if self._succeeded else 0)
        self.status.setText(text)

    # --- vocabulary changes --------------------------------------------------------------------
    def _target_state(self):
        image = self.selected_image()
        layer = self.session.result_layer(image) if image is not None else None
        return self.session.state(layer) if layer is not None else None

    def _vocabulary_differs(self) -> bool:
        state, vocabulary = self._target_state(), self.session.vocabulary.vocabulary
        return state is not None and vocabulary is not None and state.vocabulary != vocabulary

    def _on_vocabulary_changed(self) -> None:
        if self.busy:
            self._relabel_pending = True
        else:
            self.relabel()

    def relabel(self) -> None:
        """Re-label the chosen image's layer with the edited vocabulary (no backbone run)."""
        self._relabel_pending = False
        if not self._vocabulary_differs():
            return
        state, vocabulary = self._target_state(), self.session.vocabulary.vocabulary
        work = self.session.relabel_work(state, vocabulary)
        if work is None:
            self.session.apply_relabel(state, None, vocabulary)
            return
        worker = create_worker(work, _start_thread=False, _connect={"errored": self._on_error})
        self._succeeded = False
        worker.returned.connect(partial(self._on_relabelled, state, vocabulary))
        worker.finished.connect(self._on_finished)
        self._relabel_worker = worker
        self._set_running(True, "re-labelling with the new vocabulary...")
        worker.start()

    def _on_relabelled(self, state, vocabulary, results) -> None:
        self._succeeded = True
        if state.layer in self.viewer.layers:
            self.session.apply_relabel(state, results, vocabulary)

    # --- overlays ------------------------------------------------------------------------------
    def _add_overlays(self, state) -> None:
        overlays = self._overlays.setdefault(state.layer.unique_id, [])
        kinds = {type(o) for o in overlays if o.layer in self.viewer.layers}
        added = []
        if self.semantic_box.isChecked() and SemanticOverlay not in kinds:
            added.append(SemanticOverlay(self.viewer, state))
        if self.names_box.isChecked() and NamesOverlay not in kinds:
            added.append(NamesOverlay(self.viewer, state))
        overlays.extend(added)
        names = [o.layer for o in overlays if isinstance(o, NamesOverlay) and o.layer in self.viewer.layers]
        if added and names:  # names on top, so a semantic layer never hides them
            layers = self.viewer.layers
            layers.move(layers.index(names[0]), len(layers))
        if added and state.layer in self.viewer.layers:
            self.viewer.layers.selection.active = state.layer  # keys and brush stay on the labels

    def _toggle_names(self, shown: bool) -> None:
        state = self._target_state()
        if state is None:
            return
        names = [
            o
            for o in self._overlays.get(state.layer.unique_id, [])
            if isinstance(o, NamesOverlay) and o.layer in self.viewer.layers
        ]
        if names:
            names[0].layer.visible = shown
            if shown:
                names[0].update()
        elif shown:
            self._add_overlays(state)

    def closeEvent(self, event) -> None:
        self.cancel()
        self.warmer.cancel()
        self.session.checkpoints.added.disconnect(self._list_checkpoint)
        super().closeEvent(event)
