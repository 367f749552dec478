"""The Export widget: a Labels layer (made by the Segment widget, refined, or opened from a
dataset) and its image -> a dataset folder for fine-tuning, then the dataset's summary; Open
dataset loads an image of it for review. Above the export options it shows how much the chosen
layer differs from the model's own output (PQ/SQ/RQ, :mod:`napari_odise.quality`), kept up to
date as the layer is edited; the same numbers go into the dataset's manifest.

A thin face on :func:`napari_odise.io.export_results` (what the napari writer and
``napari-odise export`` use): :mod:`.export_plan` turns the layer into results on the main thread,
the writing runs in a worker, and :mod:`.dataset_review` describes and re-opens the dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from napari_odise.errors import UserError
from napari_odise.io import open_dataset
from napari_odise.io.layers import layer_quality, layer_source, model_outputs
from napari_odise.quality import Quality, format_table

from .dataset_review import describe, review_layers
from .export_plan import ExportOptions, export_work, plan_export
from .failures import report
from .folder_field import FolderField
from .gl_compat import guard_triton
from .overlays import DERIVED_KEY
from .planes import labels_shape
from .proxies import unwrap
from .scrolling import scrolling_layout
from .session import Session

NO_IMAGE = "(none)"
_IMAGE_HELP = (
    "The image saved with the labels (fine-tuning needs it). (none): the image file the labels "
    "were read from when they came from a dataset, else no image file."
)
QUALITY_DELAY_MS = 250  # edits in a burst (a brush stroke, undo steps) recount once
NO_MODEL_OUTPUT = (
    "Changes from the model: no model output to compare with (layers segmented with the Segment "
    "widget keep it; layers opened from files or drawn do not)"
)
_QUALITY_HELP = (
    "PQ, SQ and RQ (percent) of the model's own output against the labels as they are now, for all "
    "categories, things and stuff (N: categories averaged): 100 means nothing was changed. "
    "A rerun or vocabulary change makes its new output the reference. Unlabeled pixels are void, "
    "so a deleted segment is counted apart, as panopticapi does."
)


def _quality_text_of(data, features, metadata) -> str:
    """The worker's part: count, and say it (a layer whose vocabulary cannot be read says so)."""
    try:
        return quality_text(layer_quality(data, features, metadata))
    except UserError as error:
        return f"Changes from the model: cannot compare ({error})"


def quality_text(quality: Quality | None) -> str:
    """What the widget shows for a layer's :func:`~napari_odise.io.layers.layer_quality`."""
    if quality is None:
        return NO_MODEL_OUTPUT
    lines = ["Changes from the model's output (100 = none):", format_table(quality)]
    if quality.ignored:
        lines.append(f"{quality.ignored} model segment(s) deleted (left unlabeled: not in PQ)")
    return "\n".join(lines)


class ExportWidget(QWidget):
    def __init__(self, napari_viewer):
        super().__init__()
        guard_triton()  # before PyTorch loads (see gl_compat)
        self.viewer = unwrap(napari_viewer)  # the real viewer behind the Plugins menu's proxy
        self.session = Session.of(self.viewer)
        self.dataset = None  # the dataset last exported to or opened (napari_odise.io.Dataset)
        self._worker = None
        self._chosen = None  # the labels the image and name were guessed for
        self._followed = None  # (state or None, layer) whose edits refresh the quality numbers
        self._quality_count = 0  # counts started (the shown text is the latest one's)
        self._quality_timer = QTimer(self)
        self._quality_timer.setSingleShot(True)
        self._quality_timer.setInterval(QUALITY_DELAY_MS)
        self._quality_timer.timeout.connect(self.update_quality)

        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip(
            "The segmentation to export: made by the Segment widget, refined, or opened from a dataset "
            "(a hand-drawn layer is adopted like in Refine segments; give its segments categories there)"
        )
        self.labels_combo.currentTextChanged.connect(self._labels_chosen)
        self.image_combo = QComboBox()
        self.image_combo.setToolTip(_IMAGE_HELP)
        self.name_edit = QLineEdit()
        self.name_edit.setToolTip("The image's name in the dataset (stacks: one image per plane, name-<plane>)")
        self.folder = FolderField("dataset folder (created, or added to)", "Dataset folder")
        self.folder.chosen.connect(self._list_dataset_images)
        self.instances_box = QCheckBox("COCO instances (thing segments as RLE)")
        self.instances_box.setChecked(True)
        self.semantic_box = QCheckBox("Semantic PNGs (one value per category)")
        self.semantic_box.setChecked(True)
        self.overwrite_box = QCheckBox("Overwrite an image of the same name")
        self.skip_box = QCheckBox("Skip unassigned segments (their pixels stay unlabeled)")
        self.export_button = QPushButton("Export")
        self.export_button.clicked.connect(self.export)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.quality = QLabel("")
        self.quality.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.quality.setToolTip(_QUALITY_HELP)
        self.review_combo = QComboBox()
        self.review_combo.setToolTip("The dataset image Open dataset loads")
        self.open_button = QPushButton("Open dataset")
        self.open_button.setToolTip("Load the chosen image of the dataset (image + labels) for review")
        self.open_button.clicked.connect(self.review_dataset)

        form = QFormLayout()
        form.addRow("Labels", self.labels_combo)
        form.addRow("Image", self.image_combo)
        form.addRow("Name", self.name_edit)
        form.addRow("Dataset", self.folder)
        review = QHBoxLayout()
        review.addWidget(self.review_combo, 1)
        review.addWidget(self.open_button)
        review_form = QFormLayout()
        review_form.addRow("Review", review)
        layout = scrolling_layout(self)
        layout.addLayout(form)
        layout.addWidget(self.quality)
        for box in (self.instances_box, self.semantic_box, self.overwrite_box, self.skip_box):
            layout.addWidget(box)
        layout.addWidget(self.export_button)
        layout.addWidget(self.summary)
        layout.addLayout(review_form)
        layout.addStretch()

        for emitter in (
            self.viewer.layers.events.inserted,
            self.viewer.layers.events.removed,
            self.viewer.layers.events.reordered,
        ):
            emitter.connect(self._refresh_layers)
        self._refresh_layers()

    # --- choices -------------------------------------------------------------------------------
    @staticmethod
    def exportable(layer) -> bool:
        """A Labels layer that is a segmentation (as in Refine: not one derived from another)."""
        return isinstance(layer, Labels) and DERIVED_KEY not in layer.metadata

    def selected_labels(self) -> Labels | None:
        name = self.labels_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401
        return layer if layer is not None and self.exportable(layer) else None

    def selected_image(self) -> Image | None:
        name = self.image_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401
        return layer if isinstance(layer, Image) and name != NO_IMAGE else None

    def options(self) -> ExportOptions:
        return ExportOptions(
            self.instances_box.isChecked(),
            self.semantic_box.isChecked(),
            self.overwrite_box.isChecked(),
            self.skip_box.isChecked(),
        )

    def _refresh_layers(self, event=None) -> None:
        labels = [layer.name for layer in self.viewer.layers if self.exportable(layer)]
        images = [NO_IMAGE, *(layer.name for layer in self.viewer.layers if isinstance(layer, Image))]
        for combo, names in ((self.image_combo, images), (self.labels_combo, labels)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        if self.labels_combo.currentText() != self._chosen:
            self._labels_chosen(self.labels_combo.currentText())

    def _labels_chosen(self, name: str) -> None:
        """Guess the image and the name for newly chosen labels."""
        self._chosen = name
        layer = self.selected_labels()
        self._follow(layer)
        if layer is None:
            return
        image = self._image_of(layer)
        self.image_combo.setCurrentText(image.name if image is not None else NO_IMAGE)
        source = layer_source(layer.metadata)
        fallback = layer.name.removesuffix(" panoptic")
        self.name_edit.setText(image.name if image is not None else source.name or fallback)

    def _image_of(self, layer) -> Image | None:
        """The labels' image: the one they were segmented from, else none when the labels came
        with an image file, else one named as the labels say (or as "<image> panoptic" says),
        else the first of the same shape."""
        state = self.session.known(layer)
        if state is not None and state.image_layer in self.viewer.layers:
            return state.image_layer
        source = layer_source(layer.metadata)
        if source.path and Path(source.path).is_file():
            return None
        images = [item for item in self.viewer.layers if isinstance(item, Image)]
        names = (source.name, layer.name.removesuffix(" panoptic"))
        named = [image for image in images if image.name in names]
        shaped = [image for image in images if labels_shape(image) == tuple(layer.data.shape)]
        return (named or shaped or [None])[0]

    # --- how much the layer differs from the model's output ------------------------------------
    def _follow(self, layer) -> None:
        """Refresh the quality numbers when the chosen layer's segments or its kept model output
        (a rerun, a vocabulary change) change."""
        if self._followed is not None:
            state, followed = self._followed
            followed.events.metadata.disconnect(self._schedule_quality)
            if state is not None:
                state.table_changed.disconnect(self._schedule_quality)
        self._followed = None
        if layer is not None:
            state = self.session.known(layer)
            layer.events.metadata.connect(self._schedule_quality)
            if state is not None:
                state.table_changed.connect(self._schedule_quality)
            self._followed = (state, layer)
        self.update_quality()

    def _schedule_quality(self, event=None) -> None:
        self._quality_timer.start()

    def update_quality(self) -> None:
        """Show the chosen layer's :func:`~napari_odise.io.layers.layer_quality`, counted in a
        worker on a copy of the layer (a 4096x4096 layer takes about half a second of CPU)."""
        self._quality_timer.stop()
        self._quality_count += 1  # an answer for an older count is dropped
        layer = self.selected_labels()
        if layer is None:
            self.quality.setText("")
            return
        if not model_outputs(layer.metadata):
            self.quality.setText(NO_MODEL_OUTPUT)
            return
        if self._followed is not None and self._followed[0] is not None:
            self._followed[0].sync()
        count = self._quality_count
        data, features, metadata = np.array(layer.data), layer.features.copy(), dict(layer.metadata)
        worker = create_worker(_quality_text_of, data, features, metadata, _start_thread=False,
                               _connect={"errored": lambda error: report(error, "Export")})
        worker.returned.connect(lambda text: self._show_quality(text, count))
        worker.start()

    def _show_quality(self, text: str, count: int) -> None:
        if count == self._quality_count:
            self.quality.setText(text)

    # --- export --------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def export(self) -> None:
        """Write the chosen labels (and image) into the dataset folder, in a worker thread."""
        layer = self.selected_labels()
        if layer is None:
            show_error("Export: segment an image first (Segment widget) or open a dataset, then pick its labels here")
            return
        if not self.folder.text():
            show_error("Export: choose the dataset folder (a new folder, or a dataset to add to)")
            return
        folder = Path(self.folder.text())
        try:
            plan = plan_export(self.session.state(layer), self.selected_image(), self.name_edit.text())
        except UserError as error:  # ExportProblem: what to change in the widget
            show_error(f"Export: {error}")
            return
        work = export_work(plan, folder, self.options())
        worker = create_worker(work, _start_thread=False, _connect={"errored": self._on_error})
        worker.returned.connect(self._on_exported)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.export_button.setEnabled(False)
        self.summary.setText(f"exporting {len(plan.names)} image(s) to {folder}...")
        worker.start()

    def _on_exported(self, outcome) -> None:
        records, dataset = outcome
        replaced = sum(record.replaced for record in records)
        self._show_dataset(dataset)
        what = f"{len(records)} image(s)" + (f", {replaced} replaced" if replaced else "")
        show_info(f"Exported {what} to {dataset.root}")

    def _on_error(self, error: Exception) -> None:
        self.summary.setText(describe(self.dataset) if self.dataset is not None else "nothing was exported")
        report(error, "Export")

    def _on_finished(self) -> None:
        self._worker = None
        self.export_button.setEnabled(True)

    # --- the dataset ---------------------------------------------------------------------------
    def _show_dataset(self, dataset) -> None:
        self.dataset = dataset
        self.summary.setText(describe(dataset))
        current = self.review_combo.currentText()
        self.review_combo.clear()
        self.review_combo.addItems(dataset.names)
        if current in dataset.names:
            self.review_combo.setCurrentText(current)

    def _list_dataset_images(self, folder: str) -> None:
        """A typed or browsed dataset folder: show its summary and images (quietly, if it is one)."""
        try:
            self._show_dataset(open_dataset(folder))
        except (UserError, OSError):  # not a dataset (yet): nothing to list
            self.review_combo.clear()

    def review_dataset(self) -> None:
        """Load the chosen image of the dataset folder (image + labels layers) for review."""
        folder = self.folder.text()
        if not folder:
            self.folder.browse()
            folder = self.folder.text()
            if not folder:
                return
        try:
            dataset = open_dataset(folder)
            self._show_dataset(dataset)
            if not dataset.names:
                show_error(f"Open dataset: {folder} has no images yet: export some first")
                return
            for layer in review_layers(dataset, self.review_combo.currentText() or dataset.names[0]):
                self.viewer.add_layer(layer)
        except (UserError, OSError) as error:  # not a dataset, or one that cannot be read
            show_error(f"Open dataset: {error}")
