"""The vocabulary editor: presets (several at once), own categories, remove, rename, load/save.

UI only: every button is one call on :class:`VocabularyModel`; errors become notifications.
"""

from __future__ import annotations

from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from napari_odise.errors import UserError
from napari_odise.vocabulary import Vocabulary, has_kind_marker

from .vocabulary_model import VocabularyModel

PRESET_LABELS = {
    "coco": "COCO (133)",
    "ade20k": "ADE20K (150)",
    "ade20k-847": "ADE20K-Full (847)",
    "lvis": "LVIS (1203)",
    "pascal-context-59": "Pascal Context (59)",
    "pascal-context-459": "Pascal Context (459)",
    "pascal-voc": "Pascal VOC (21)",
    "demo": "ODISE demo (COCO+ADE+LVIS)",
}
_ADD_HELP = (
    "One category: 'name' or 'name: synonym, synonym'. The model looks for every synonym and keeps "
    "the best match. Stuff is for amorphous regions (sky, road, grass); things are countable objects."
)


def _run(action, *args) -> tuple[bool, object]:
    """Call a model edit: (succeeded, its return value); failures become notifications."""
    try:
        return True, action(*args)
    except (UserError, OSError) as error:  # a refused edit, or a file that cannot be read or written
        show_error(f"Vocabulary: {error}")
        return False, None


class VocabularyWidget(QGroupBox):
    def __init__(self, model: VocabularyModel, parent=None):
        super().__init__("Vocabulary", parent)
        self.model = model
        layout = QVBoxLayout(self)

        presets = QGridLayout()
        self.preset_boxes: dict[str, QCheckBox] = {}
        for i, name in enumerate(Vocabulary.preset_names()):
            box = QCheckBox(PRESET_LABELS.get(name, name))
            box.setToolTip(f"Add the '{name}' preset's categories (several presets can be ticked)")
            box.toggled.connect(lambda ticked, name=name: _run(self.model.set_preset, name, ticked))
            presets.addWidget(box, i // 2, i % 2)
            self.preset_boxes[name] = box
        layout.addLayout(presets)

        self.filter = QLineEdit(placeholderText="filter categories...")
        self.filter.textChanged.connect(self._apply_filter)
        self.count = QLabel()
        top = QHBoxLayout()
        top.addWidget(self.filter)
        top.addWidget(self.count)
        layout.addLayout(top)
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setMinimumHeight(120)
        layout.addWidget(self.list)

        self.new_text = QLineEdit(placeholderText="new category, e.g. traffic cone: cone, pylon")
        self.new_text.setToolTip(_ADD_HELP)
        self.new_text.returnPressed.connect(self.add)
        self.kind = QComboBox()
        self.kind.addItems(["thing", "stuff"])
        self.kind.setToolTip(_ADD_HELP)
        add = QPushButton("Add")
        add.clicked.connect(self.add)
        row = QHBoxLayout()
        row.addWidget(self.new_text, 1)
        row.addWidget(self.kind)
        row.addWidget(add)
        layout.addLayout(row)

        self.rename_text = QLineEdit(placeholderText="new name for the selected category")
        self.rename_text.returnPressed.connect(self.rename)
        rename = QPushButton("Rename")
        rename.clicked.connect(self.rename)
        remove = QPushButton("Remove selected")
        remove.clicked.connect(self.remove)
        row = QHBoxLayout()
        row.addWidget(self.rename_text, 1)
        row.addWidget(rename)
        row.addWidget(remove)
        layout.addLayout(row)

        load, save = QPushButton("Load..."), QPushButton("Save...")
        load.clicked.connect(self._load_dialog)
        save.clicked.connect(self._save_dialog)
        row = QHBoxLayout()
        row.addWidget(load)
        row.addWidget(save)
        layout.addLayout(row)

        model.changed.connect(self.refresh)
        self.refresh()

    # --- actions ---------------------------------------------------------------------------------
    def add(self) -> None:
        text = self.new_text.text().strip()
        if not text:
            show_warning("Type a category name first, e.g. 'traffic cone: cone, pylon'")
            return
        if not has_kind_marker(text):  # "puddle (wet ground)" still takes the chosen kind
            text = f"{text} ({self.kind.currentText()})"
        ok, skipped = _run(self.model.add_text, text)
        if skipped:
            show_warning(f"Already in the vocabulary: {', '.join(skipped)}")
        if ok:
            self.new_text.clear()

    def selected_names(self) -> list[str]:
        return [item.data(Qt.ItemDataRole.UserRole) for item in self.list.selectedItems()]

    def remove(self) -> None:
        names = self.selected_names()
        if not names:
            show_warning("Select the categories to remove in the list first")
            return
        _run(self.model.remove, *names)

    def rename(self) -> None:
        names = self.selected_names()
        if len(names) != 1 or not self.rename_text.text().strip():
            show_warning("Select one category and type its new name")
            return
        ok, _ = _run(self.model.rename, names[0], self.rename_text.text().strip())
        if ok:
            self.rename_text.clear()

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load vocabulary", filter="Vocabulary (*.json)")
        if path:
            _run(self.model.load, path)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save vocabulary", filter="Vocabulary (*.json)")
        if path:
            _run(self.model.save, path)

    # --- view ------------------------------------------------------------------------------------
    def refresh(self) -> None:
        for name, box in self.preset_boxes.items():
            box.blockSignals(True)
            box.setChecked(name in self.model.presets)
            box.blockSignals(False)
        self.list.clear()
        vocabulary = self.model.vocabulary
        for category in vocabulary or ():
            kind = "thing" if category.isthing else "stuff"
            synonyms = [s for s in category.synonyms if s != category.name]
            text = f"{category.name}  ({kind})" + (f"  = {', '.join(synonyms)}" if synonyms else "")
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, category.name)
            self.list.addItem(item)
        self.count.setText(f"{len(vocabulary) if vocabulary else 0} categories")
        self._apply_filter(self.filter.text())

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for row in range(self.list.count()):
            item = self.list.item(row)
            item.setHidden(bool(needle) and needle not in item.text().lower())
