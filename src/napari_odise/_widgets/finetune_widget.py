"""The Fine-tune widget: train ODISE's head on an exported dataset in a worker, with a step
progress bar, the latest losses and validation PQ, and Cancel; the result becomes a model choice.

A thin face on :class:`napari_odise.train.finetune.Finetuner` (what ``napari-odise finetune``
runs): :class:`.training_run.TrainingRun` is the work, :class:`.job.Job` the thread and cancel
flag. Cancel stops at the next step boundary after ``last.pt`` is saved; Train again with
Resume ticked continues there. The finished ``model.pth`` is added to the session's
checkpoints, which the Segment widget's model list follows.
"""

from __future__ import annotations

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from napari_odise.errors import UserError

from .failures import report
from .finetune_options import FinetuneOptions
from .gl_compat import guard_triton
from .job import Job
from .proxies import unwrap
from .scrolling import scrolling_layout
from .session import Session
from .training_run import TrainingRun, describe_step


class FinetuneWidget(QWidget):
    def __init__(self, napari_viewer):
        super().__init__()
        guard_triton()  # before PyTorch loads (see gl_compat)
        self.viewer = unwrap(napari_viewer)  # the real viewer behind the Plugins menu's proxy
        self.session = Session.of(self.viewer)
        self.options = FinetuneOptions(self.session.checkpoints)
        self.reports: list = []  # the StepReports of the latest run, the newest last
        self._job = None
        self._run = None
        self._worker = None
        self._failed = False

        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.train)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("stop after the current step; last.pt keeps it for Resume")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m steps")
        self.progress_bar.setRange(0, self.options.steps.value())
        self.progress_bar.setValue(0)
        self.options.steps.valueChanged.connect(self._steps_changed)
        self.losses = QLabel("")
        self.losses.setWordWrap(True)
        self.validation = QLabel("")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        layout = scrolling_layout(self)
        layout.addWidget(self.options)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.losses)
        layout.addWidget(self.validation)
        layout.addWidget(self.status)
        layout.addStretch()

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def train(self) -> None:
        """Start (or resume) fine-tuning in a worker thread."""
        if self.busy:
            return
        try:
            config = self.options.config()
        except UserError as error:
            show_error(f"Fine-tune: {error}")
            return
        if _has_no_segments(config.dataset):
            show_error(
                f"Fine-tune: {config.dataset} has no segments to learn from (validation PQ would be "
                "nan): segment and refine images, export them into it with the Export widget, then train"
            )
            return
        self._job = Job()
        self._run = TrainingRun(config, self.options.resume.isChecked(), self._job)
        self._failed = False
        self.reports = []
        worker = create_worker(
            self._job.run, self._run, interrupt=False, _start_thread=False, _connect={"errored": self._on_error}
        )
        worker.yielded.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.progress_bar.setRange(0, config.steps)
        self.progress_bar.setValue(0)
        self.losses.setText("")
        self.validation.setText("")
        self._set_running(True, f"loading '{config.base_model}' and the dataset...")
        worker.start()

    def cancel(self) -> None:
        """Stop at the next step boundary (after saving last.pt)."""
        if self._worker is None:
            return
        self._job.cancel()
        self.cancel_button.setEnabled(False)
        self.status.setText("stopping after the current step...")

    def _on_progress(self, report) -> None:
        self.reports.append(report)
        self.progress_bar.setValue(report.step)
        self.losses.setText(describe_step(report))
        if report.val_pq is not None:
            self.validation.setText(f"validation PQ {report.val_pq:.3f} (step {report.step})")
        if report.losses:
            self.status.setText("training...")

    def _on_error(self, error: Exception) -> None:
        self._failed = True
        report(error, "Fine-tune")

    def _on_finished(self) -> None:
        run, self._worker = self._run, None
        if run.model_path is not None:
            path = self.session.add_checkpoint(run.model_path)
            self.progress_bar.setValue(run.step)
            text = f"done: {path} (now a choice in the Segment widget's Model list)"
            show_info(f"Fine-tuned model saved: {path}. Choose it in the Segment widget's Model list.")
        elif self._failed:
            text = "failed (see the notification)"
        else:
            text = (
                f"stopped at step {run.step} of {run.config.steps}; {run.checkpoint} keeps it: "
                f"press Train again with Resume ticked to continue from there"
            )
            show_info(f"Fine-tune: {text}")
        self._set_running(False, text)

    def _steps_changed(self, steps: int) -> None:
        if not self.busy:
            self.progress_bar.setRange(0, steps)

    def _set_running(self, running: bool, text: str) -> None:
        self.train_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.options.setEnabled(not running)
        self.status.setText(text)

    def closeEvent(self, event) -> None:
        self.cancel()
        super().closeEvent(event)


def _has_no_segments(folder: str) -> bool:
    """A dataset that opens and holds no segment at all (other problems: the run reports them)."""
    from napari_odise.io import open_dataset

    try:
        return open_dataset(folder).summary()["segments"] == 0
    except (UserError, OSError):
        return False
