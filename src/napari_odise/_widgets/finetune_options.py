"""The Fine-tune widget's form: the options of ``napari-odise finetune`` (same defaults), the
common ones in sight and the rest in a collapsed "Advanced" group; :meth:`config` turns them
into a :class:`FinetuneConfig`.
"""

from __future__ import annotations

from qtpy.QtGui import QDoubleValidator
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_odise.errors import InvalidInputError
from napari_odise.models import DEVICES, PRECISIONS
from napari_odise.train.criterion import LossWeights
from napari_odise.train.finetune import FinetuneConfig

from .checkpoints import Checkpoints
from .folder_field import FolderField

BASE_MODELS = ("official", "tiny")  # the sizes fine-tuning starts from (the caption model cannot be fine-tuned)
CHECKPOINT_ITEM = "model.pth file..."

SCHEDULES = ("step", "cosine", "constant")


def _spin(low: int, high: int, value: int, step: int = 1, tip: str = "") -> QSpinBox:
    box = QSpinBox(minimum=low, maximum=high, value=value, singleStep=step)
    box.setToolTip(tip)
    return box


def _float_spin(low: float, high: float, value: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
    box = QDoubleSpinBox(minimum=low, maximum=high, singleStep=step, decimals=decimals)
    box.setValue(value)
    return box


def _float_edit(value: str, tip: str) -> QLineEdit:
    """A number like 1e-4 (spin boxes show tiny values badly)."""
    edit = QLineEdit(value)
    validator = QDoubleValidator(0.0, 1e3, 12)
    validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
    edit.setValidator(validator)
    edit.setToolTip(tip)
    return edit


class FinetuneOptions(QWidget):
    def __init__(self, checkpoints: Checkpoints):
        super().__init__()
        self.checkpoints = checkpoints
        self.dataset = FolderField("dataset folder (written by the Export widget)", "Dataset folder")
        self.output = FolderField("output folder (an existing one resumes)", "Output folder")
        self.base_model = QComboBox()
        self.base_model.addItems([*BASE_MODELS, *checkpoints, CHECKPOINT_ITEM])
        self.base_model.setToolTip(
            "official: the ODISE label model (needs its weights); tiny: random weights, for trying "
            "fine-tuning quickly; a model.pth to continue from a fine-tuned model"
        )
        self.base_model.activated.connect(self._maybe_pick_checkpoint)
        checkpoints.added.connect(self._list_checkpoint)
        self.steps = _spin(1, 10**7, 2000, 100, "training steps (a resumed run counts the steps already done)")
        self.batch_size = _spin(1, 256, 2, tip="images per step")
        self.image_size = _spin(64, 4096, 1024, 64, "training crop size in pixels, a multiple of 64")
        self.lr = _float_edit("1e-4", "AdamW learning rate (ODISE: 1e-4)")
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setToolTip("auto: the GPU when PyTorch sees one (training on a CPU is very slow)")
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.precision.setToolTip("fp16/bf16: mixed precision, less GPU memory; needs a CUDA GPU")
        self.val_fraction = _float_spin(0.0, 0.9, 0.2, 0.05)
        self.val_fraction.setToolTip("share of the images held out to measure PQ during training")
        self.resume = QCheckBox("Resume from the output folder's last.pt")
        self.resume.setChecked(True)

        form = QFormLayout()
        form.addRow("Dataset", self.dataset)
        form.addRow("Output", self.output)
        form.addRow("Base model", self.base_model)
        form.addRow("Steps", self.steps)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Image size", self.image_size)
        form.addRow("Learning rate", self.lr)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        form.addRow("Validation share", self.val_fraction)
        form.addRow("", self.resume)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self._advanced())

    def _advanced(self) -> QCollapsible:
        self.val_every = _spin(0, 10**7, 500, 100, "validate every this many steps (0: never)")
        self.checkpoint_every = _spin(0, 10**7, 100, 50, "save last.pt every this many steps (0: only at the end)")
        self.warmup_steps = _spin(0, 10**6, 50, 10)
        self.schedule = QComboBox()
        self.schedule.addItems(SCHEDULES)
        self.grad_clip = _float_edit("0.01", "largest gradient norm (ODISE: 0.01; 0: no clipping)")
        self.weight_decay = _float_edit("0.05", "AdamW weight decay (not on norms and biases)")
        self.min_scale = _float_spin(0.05, 1.0, 0.1, 0.05)
        self.max_scale = _float_spin(1.0, 4.0, 2.0, 0.1)
        self.num_points = _spin(64, 10**6, 12544, 1024, "points sampled per mask for the mask losses")
        self.seed = _spin(0, 2**31 - 1, 0)
        self.gradient_checkpointing = QCheckBox("Gradient checkpointing (less GPU memory, ~30% slower)")
        content = QWidget()
        form = QFormLayout(content)
        form.addRow("Validate every", self.val_every)
        form.addRow("Checkpoint every", self.checkpoint_every)
        form.addRow("Warm-up steps", self.warmup_steps)
        form.addRow("Schedule", self.schedule)
        form.addRow("Gradient clip", self.grad_clip)
        form.addRow("Weight decay", self.weight_decay)
        form.addRow("Jitter scale from", self.min_scale)
        form.addRow("Jitter scale to", self.max_scale)
        form.addRow("Points per mask", self.num_points)
        form.addRow("Seed", self.seed)
        form.addRow("", self.gradient_checkpointing)
        group = QCollapsible("Advanced")
        group.addWidget(content)
        return group

    # --- base model list -----------------------------------------------------------------------
    def _maybe_pick_checkpoint(self, index: int) -> None:
        if self.base_model.itemText(index) != CHECKPOINT_ITEM:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Fine-tuned model to continue", filter="Models (*.pth)")
        if path:
            self.base_model.setCurrentText(self.checkpoints.add(path))
        else:
            self.base_model.setCurrentIndex(0)

    def _list_checkpoint(self, path: str) -> None:
        if self.base_model.findText(path) < 0:
            self.base_model.insertItem(self.base_model.findText(CHECKPOINT_ITEM), path)

    # --- the config ----------------------------------------------------------------------------
    def config(self) -> FinetuneConfig:
        """The options as a FinetuneConfig; ValueError saying what to fill in when one is missing."""
        if not self.dataset.text():
            raise InvalidInputError(
                "choose the dataset folder: one written by the Export widget or `napari-odise export`"
            )
        if not self.output.text():
            raise InvalidInputError("choose an output folder for the checkpoints and the fine-tuned model.pth")
        if self.base_model.currentText() == CHECKPOINT_ITEM:
            raise InvalidInputError("choose the base model: official, tiny, or a model.pth file")
        return FinetuneConfig(
            dataset=self.dataset.text(),
            output=self.output.text(),
            base_model=self.base_model.currentText(),
            steps=self.steps.value(),
            batch_size=self.batch_size.value(),
            image_size=self.image_size.value(),
            min_scale=self.min_scale.value(),
            max_scale=self.max_scale.value(),
            lr=_number(self.lr, "learning rate"),
            weight_decay=_number(self.weight_decay, "weight decay"),
            grad_clip=_number(self.grad_clip, "gradient clip") or None,
            warmup_steps=self.warmup_steps.value(),
            schedule=self.schedule.currentText(),
            precision=self.precision.currentText(),
            gradient_checkpointing=self.gradient_checkpointing.isChecked(),
            val_fraction=self.val_fraction.value(),
            val_every=self.val_every.value(),
            checkpoint_every=self.checkpoint_every.value(),
            seed=self.seed.value(),
            device=self.device.currentText(),
            loss=LossWeights(num_points=self.num_points.value()),
        )


def _number(edit: QLineEdit, what: str) -> float:
    try:
        return float(edit.text())
    except ValueError:
        raise InvalidInputError(f"the {what} {edit.text()!r} is not a number (e.g. 1e-4)") from None
