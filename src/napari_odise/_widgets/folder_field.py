"""A folder typed or chosen with a Browse... button (the Fine-tune and Export widgets' folders).
Typing stays possible: pasting a path is quicker than any dialog."""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget


class FolderField(QWidget):
    chosen = Signal(str)  # after Browse... or when typing is finished

    def __init__(self, placeholder: str, title: str):
        super().__init__()
        self.title = title
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.editingFinished.connect(lambda: self.chosen.emit(self.text()))
        browse = QPushButton("Browse...")
        browse.clicked.connect(self.browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit)
        row.addWidget(browse)

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, text: str) -> None:
        self.edit.setText(text)

    def browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.title, self.text())
        if folder:
            self.edit.setText(folder)
            self.chosen.emit(folder)
