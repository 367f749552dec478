"""The Batch widget: a folder of images -> store / per-image files / COCO dataset, with a
progress bar, Cancel, and resume by pressing Run again.

A thin face on :func:`napari_odise.batch.run_batch`, which runs in a napari worker thread; its
progress callback reaches the bar through a Qt signal (queued to the GUI thread). Everything
here can be done from a script or with ``napari-odise segment``.

"Open in napari..." puts one image of the output folder's store into the viewer (its picture and
its panoptic Labels layer, with the model's tensors kept for proposals and vocabulary changes):
a thin face on :func:`napari_odise.batch.open_stored.open_stored_image`, read and with the
store's model loaded (shared pool) in a worker.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_odise.models import OFFERED_MODELS

from .gl_compat import guard_triton
from .model_fields import ModelFields
from .proxies import unwrap
from .scrolling import scrolling_layout


class _ProgressBridge(QObject):
    progress = Signal(object)


class BatchWidget(QWidget):
    def __init__(self, napari_viewer=None):
        super().__init__()
        guard_triton()  # before PyTorch loads (see gl_compat)
        self.viewer = unwrap(napari_viewer)  # the real viewer behind the Plugins menu's proxy
        self.model_settings: dict = {}  # resolution options (e.g. short_edge) over the model's own, for scripted runs
        self.worker = None
        self.open_worker = None
        self.summary = None
        self._cancel = threading.Event()
        self._bridge = _ProgressBridge()
        self._bridge.progress.connect(self._show_progress)

        form = QFormLayout()
        self.input_edit = QLineEdit()
        self.input_edit.setPlaceholderText("folder of images")
        form.addRow("Images", _with_browse(self.input_edit, self._pick_input))
        self.recursive_box = QCheckBox("include sub-folders")
        form.addRow("", self.recursive_box)
        self.glob_edit = QLineEdit()
        self.glob_edit.setPlaceholderText('all images, or e.g. "*.tif"')
        form.addRow("Only", self.glob_edit)
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("output folder (an existing one resumes)")
        form.addRow("Output", _with_browse(self.output_edit, self._pick_output))
        self.model_fields = ModelFields(form, OFFERED_MODELS)
        self.model_combo, self.device_combo, self.precision_combo, self.settings_combo = self.model_fields.combos
        self.vocab_combo = QComboBox()
        self.vocab_combo.setEditable(True)
        from napari_odise.vocabulary import Vocabulary

        self.vocab_combo.addItems(Vocabulary.preset_names())
        self.vocab_combo.setToolTip("a preset name, or the path of a vocabulary .json/.txt file")
        form.addRow("Vocabulary", _with_browse(self.vocab_combo, self._pick_vocabulary))
        self.store_box = QCheckBox("zarr store (re-label later without the backbone)")
        self.store_box.setChecked(True)
        self.files_box = QCheckBox("per-image panoptic PNG, segments JSON, overlay")
        self.files_box.setChecked(True)
        self.coco_box = QCheckBox("COCO dataset (output/coco)")
        outputs = QVBoxLayout()
        for box in (self.store_box, self.files_box, self.coco_box):
            outputs.addWidget(box)
        form.addRow("Write", outputs)

        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.open_combo = QComboBox()
        self.open_combo.setToolTip("an image of the output folder's store (List: read the folder again)")
        list_button = QPushButton("List")
        list_button.clicked.connect(self.list_stored)
        self.open_button = QPushButton("Open in napari...")
        self.open_button.setToolTip(
            "add the image and its panoptic labels to the viewer, with the model's tensors: "
            "proposals in the Refine panel and vocabulary changes need no new model run"
        )
        self.open_button.clicked.connect(self.open_stored)
        self.output_edit.editingFinished.connect(self.list_stored)
        opening = QHBoxLayout()
        opening.addWidget(self.open_combo, 1)
        opening.addWidget(list_button)
        opening.addWidget(self.open_button)
        layout = scrolling_layout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("Stored images"))
        layout.addLayout(opening)
        layout.addStretch()

    # -- choosing folders --------------------------------------------------------------------
    def _pick_input(self):
        folder = QFileDialog.getExistingDirectory(self, "Folder of images")
        if folder:
            self.input_edit.setText(folder)

    def _pick_output(self):
        folder = QFileDialog.getExistingDirectory(self, "Output folder")
        if folder:
            self.output_edit.setText(folder)

    def _pick_vocabulary(self):
        path, _ = QFileDialog.getOpenFileName(self, "Vocabulary file", "", "Vocabulary (*.json *.txt)")
        if path:
            self.vocab_combo.setCurrentText(path)

    # -- running -----------------------------------------------------------------------------
    def run(self):
        """Start (or resume) the batch in a worker thread."""
        from napari_odise.batch import BatchOptions
        from napari_odise.batch.vocabularies import load_vocabulary
        from napari_odise.errors import UserError

        inputs, out = self.input_edit.text().strip(), self.output_edit.text().strip()
        if not inputs or not out:
            self.status.setText("Choose a folder of images and an output folder first.")
            return
        try:
            vocabulary = load_vocabulary(self.vocab_combo.currentText().strip())
        except (UserError, OSError) as error:  # a refused vocabulary, or a file that cannot be read
            self.status.setText(f"Vocabulary: {error}")
            return
        choice = self.model_fields.choice()
        try:
            spec = choice.spec
        except UserError as error:
            self.status.setText(f"Model: {error}")
            return
        options = BatchOptions(
            recursive=self.recursive_box.isChecked(),
            pattern=self.glob_edit.text().strip() or None,
            store=self.store_box.isChecked(),
            files=self.files_box.isChecked(),
            coco=self.coco_box.isChecked(),
        )
        self._cancel.clear()
        self.summary = None
        self.progress_bar.setRange(0, 0)  # busy until the first report (model loading)
        self.status.setText("Finding images and loading the model...")
        self.worker = create_worker(
            _run_or_explain, [Path(inputs)], Path(out), vocabulary, spec, options,
            settings_name=choice.settings, settings_changes=dict(self.model_settings),
            progress=self._bridge.progress.emit, cancel=self._cancel, _start_thread=False,
        )
        self.worker.returned.connect(self._finished)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._idle)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.worker.start()

    def cancel(self):
        """Stop after the current image (or during it); Run again resumes."""
        self._cancel.set()
        self.cancel_button.setEnabled(False)
        self.status.setText("Cancelling...")

    def _show_progress(self, event):
        self.progress_bar.setRange(0, max(event.total, 1))
        self.progress_bar.setValue(event.done)
        done_before = f" ({event.skipped} done before)" if event.skipped else ""
        self.status.setText(event.text() + done_before)

    def _finished(self, summary):
        if isinstance(summary, _Refused):
            self.status.setText(f"The batch could not run: {summary.reason}")
            return
        self.summary = summary
        self.status.setText(summary.text())
        self.list_stored()

    def _failed(self, error):
        """Not a refusal (those come back as ``_Refused``): a bug, which napari reports with its traceback."""
        self.status.setText(f"The batch stopped on an error: {error}")
        raise error

    def _idle(self):
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)


    # -- opening a stored image ------------------------------------------------------------------
    def list_stored(self) -> list[str]:
        """Offer the output folder's stored images in the list (none: the folder has no store)."""
        from napari_odise.batch.open_stored import stored_keys
        from napari_odise.errors import UserError

        out = self.output_edit.text().strip()
        try:
            keys = stored_keys(out) if out and Path(out).is_dir() else []
        except UserError:
            keys = []
        current = self.open_combo.currentText()
        self.open_combo.clear()
        self.open_combo.addItems(keys)
        if current in keys:
            self.open_combo.setCurrentText(current)
        return keys

    def open_stored(self) -> None:
        """Open the chosen stored image in the viewer; reading it (and loading the store's model the
        first time) runs in a worker."""
        from .session import Session

        key, out = self.open_combo.currentText(), self.output_edit.text().strip()
        if not key or not out:
            self.status.setText("Choose an output folder with a store, then an image in the list (List reads it).")
            return
        if self.viewer is None:
            self.status.setText("Opening needs the napari viewer (open this widget from the Plugins menu).")
            return
        choice = self.model_fields.choice()
        images = self.input_edit.text().strip() or None
        self.open_button.setEnabled(False)
        self.status.setText(f"Opening {key} (reading its tensors; loading the model the first time)...")
        pool = Session.of(self.viewer).pool  # the Segment and Refine widgets' models
        self.open_worker = create_worker(_open_or_explain, out, key, images, choice, pool, _start_thread=False)
        self.open_worker.returned.connect(self._opened)
        self.open_worker.errored.connect(self._failed_to_open)
        self.open_worker.finished.connect(lambda: self.open_button.setEnabled(True))
        self.open_worker.start()

    def _opened(self, opened) -> None:
        from .session import Session

        if isinstance(opened, _Refused):
            self.status.setText(f"Could not open the image: {opened.reason}")
            return
        stored, choice = opened
        image = self.viewer.add_image(stored.pixels, name=stored.key, rgb=True)
        result = stored.result
        labels = Session.of(self.viewer).apply_segmentation(image, {(): result}, result.vocabulary, choice)
        self.viewer.layers.selection.active = labels
        self.status.setText(
            f"Opened {stored.key}: {len(result.segments)} segments; the Refine panel's proposals "
            "and vocabulary changes use the stored model tensors"
        )

    def _failed_to_open(self, error) -> None:
        self.status.setText(f"Opening stopped on an error: {error}")
        raise error


@dataclass(frozen=True)
class _Refused:
    reason: str


def _run_or_explain(inputs, out, vocabulary, spec, options, settings_name, settings_changes, **kwargs):
    """run_batch with the process's shared model (the Segment widget's, if it loaded the same),
    and "cannot run as asked" errors turned into a reason for the status line (raised, napari
    would report them as crashes; returned as exceptions, superqt raises them)."""
    from napari_odise.batch import run_batch
    from napari_odise.errors import UserError
    from napari_odise.pool import default_pool

    try:
        predictor = default_pool().get(spec)
        settings = predictor.named_settings(settings_name, **settings_changes)
        return run_batch(inputs, out, vocabulary, predictor, options, settings=settings, **kwargs)
    except UserError as error:
        return _Refused(str(error))


def _open_or_explain(out, key, images, choice, pool):
    """(StoredImage, ModelChoice naming the store's model) for ``_opened``, the model loaded in the
    shared pool; a refusal (no store, image file not found) comes back as ``_Refused``."""
    from napari_odise.batch.open_stored import open_stored_image, stored_model
    from napari_odise.errors import UserError
    from .session import ModelChoice

    try:
        stored = open_stored_image(out, key, images)
        spec = stored_model(out, choice.device)
        pool.get(spec)  # loaded here, off the GUI thread; the Refine panel peeks it
        return stored, ModelChoice(spec.name, spec.device, spec.precision, choice.settings)
    except UserError as error:
        return _Refused(str(error))


def _with_browse(field: QWidget, pick) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(field)
    button = QPushButton("Browse...")
    button.clicked.connect(pick)
    layout.addWidget(button)
    return row
