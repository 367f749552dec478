"""The model, device, precision and settings choices, as the Segment and Batch widgets show them."""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtWidgets import QComboBox, QFormLayout

from napari_odise.models import DEVICES, PRECISIONS, SETTINGS_NAMES

from .session import ModelChoice

MODEL_HELP = (
    "official: ODISE label model (needs the official weights: `napari-odise weights status` says "
    "which files and where). official-caption: the caption-trained variant. tiny: random weights, "
    "for trying the plugin without weights (its segments are meaningless)."
)


class ModelFields:
    """Four combo boxes added to a form; :meth:`choice` reads them as one :class:`ModelChoice`."""

    def __init__(self, form: QFormLayout, models: Sequence[str]):
        self.model = _combo(form, "Model", models, MODEL_HELP)
        self.device = _combo(form, "Device", DEVICES, "auto: the GPU when PyTorch sees one, else the CPU (slow)")
        self.precision = _combo(
            form,
            "Precision",
            PRECISIONS,
            "fp16/bf16: the weights are stored in half precision (half the memory, faster on recent "
            "GPUs; slow on CPUs without native bf16). fp16 needs a CUDA GPU",
        )
        self.settings = _combo(
            form,
            "Settings",
            SETTINGS_NAMES,
            "evaluation: the paper's settings (ensemble 0.3/0.7, kept-area threshold 0.8); "
            "demo: the official demo's (0.35/0.65, threshold 0: fewer holes, more small segments)",
        )

    @property
    def combos(self) -> tuple[QComboBox, ...]:
        return (self.model, self.device, self.precision, self.settings)

    def choice(self) -> ModelChoice:
        return ModelChoice(*(combo.currentText() for combo in self.combos))


def _combo(form: QFormLayout, label: str, items: Sequence[str], tip: str) -> QComboBox:
    combo = QComboBox()
    combo.addItems(list(items))
    combo.setToolTip(tip)
    form.addRow(label, combo)
    return combo
