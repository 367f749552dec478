""""Prepare ticked presets": their text embeddings computed in the background, before they are needed.

The first use of a vocabulary runs every synonym through CLIP's text tower (minutes for LVIS on a
CPU). This row does it ahead, as ``napari-odise vocab warm`` does, with the model chosen in the
Segment widget: a napari generator worker (:meth:`Session.warm_work` under a :class:`Job`), its own
progress bar and Cancel, so Run and vocabulary edits stay usable meanwhile. Models loaded from
weight files keep the embeddings on disk for every later start; the others only in memory.
"""

from __future__ import annotations

from collections.abc import Callable

from napari.qt.threading import create_worker
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from .failures import report
from .job import Job, Progress
from .session import ModelChoice, Session


class VocabularyWarmer(QWidget):
    def __init__(self, session: Session, choice: Callable[[], ModelChoice], parent=None):
        super().__init__(parent)
        self.session = session
        self.choice = choice
        self._job: Job | None = None
        self._worker = None
        self._presets: list[str] = []
        self._counts: dict[str, int] | None = None  # the last run's new strings per preset
        self.warm_button = QPushButton("Prepare ticked presets")
        self.warm_button.setToolTip(
            "Compute the ticked presets' text embeddings now, in the background, with the chosen model "
            "(kept on disk for models loaded from weight files), so their first use does not wait"
        )
        self.warm_button.clicked.connect(self.warm)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.warm_button, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def warm(self) -> None:
        presets = self.session.vocabulary.presets
        if not presets:
            show_warning("Tick the presets to prepare first")
            return
        choice = self.choice()
        self._presets = presets
        self._job = Job()
        worker = create_worker(
            self._job.run, self.session.warm_work(presets, choice), _start_thread=False, _connect={"errored": self._on_error}
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_done)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._counts = None
        self._set_running(True, f"preparing {', '.join(presets)} with {choice.model}...")
        worker.start()

    def cancel(self) -> None:
        """Stop after the chunk of categories being embedded (what is embedded stays stored)."""
        if self._worker is None:
            return
        self._job.cancel()
        self._worker.quit()
        self.cancel_button.setEnabled(False)
        self.status.setText("cancelling...")

    def _on_progress(self, progress: Progress) -> None:
        if progress.stage == "load":
            self.progress_bar.setRange(0, 0)  # busy: loading reports no steps
            self.status.setText("loading the model...")
            return
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(round(progress.fraction * 1000))
        name = self._presets[progress.plane]
        self.status.setText(f"{name}: {progress.done}/{progress.total} categories")

    def _on_done(self, counts: dict[str, int] | None) -> None:
        self._counts = counts
        if counts is not None:
            done = ", ".join(f"{name} ({count} new strings)" for name, count in counts.items())
            show_info(f"Text embeddings ready: {done}")

    def _on_error(self, error: Exception) -> None:
        report(error, "Prepare presets")

    def _on_finished(self) -> None:
        cancelled = self._job is not None and self._job.cancelled
        self._worker = None
        if cancelled:
            self._set_running(False, "cancelled: what was embedded is kept")
        elif self._counts is None:
            self._set_running(False, "stopped (see the notification)")
        else:
            done = ", ".join(f"{name} (+{count} strings)" for name, count in self._counts.items())
            self._set_running(False, f"prepared: {done}")

    def _set_running(self, running: bool, text: str) -> None:
        self.warm_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress_bar.setRange(0, 1000)  # ends the busy phase
            self.progress_bar.setValue(1000 if self._counts is not None else 0)
        self.status.setText(text)
