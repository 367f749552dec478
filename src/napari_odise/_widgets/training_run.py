"""One press of Train, as work for :meth:`Job.run`: build the :class:`Finetuner` (loading the base
model and the dataset takes long, so in the worker too), then train with its reports as progress.

Cancelling is the Finetuner's own: ``should_stop`` is polled before each step, and the loop saves
``last.pt`` before it stops, so the job runs with ``interrupt=False`` (a report raising inside the
loop would skip that save). How far it got is :attr:`TrainingRun.step`, read from the trainer,
because the reports after a cancel are dropped.
"""

from __future__ import annotations

import math
from pathlib import Path

from napari_odise.train.finetune import Cancelled, FinetuneConfig, Finetuner, StepReport

from .job import Job

class TrainingRun:
    def __init__(self, config: FinetuneConfig, resume: bool, job: Job):
        self.config, self.resume, self.job = config, resume, job
        self.trainer: Finetuner | None = None
        self.model_path: Path | None = None  # set when training finished and model.pth is written

    @property
    def step(self) -> int:
        return self.trainer.step if self.trainer is not None else 0

    @property
    def checkpoint(self) -> Path:
        return Path(self.config.output) / "last.pt"

    def __call__(self, report) -> Path | None:
        self.trainer = Finetuner(self.config, resume=self.resume)
        report(StepReport(self.trainer.step, self.config.steps, {}, math.nan))  # where it starts
        try:
            self.model_path = self.trainer.run(progress=report, should_stop=lambda: self.job.cancelled)
        except Cancelled:
            return None
        return self.model_path


def describe_step(report: StepReport) -> str:
    """The latest losses for a label: total first, then the last layer's terms."""
    if not report.losses:
        return f"resuming at step {report.step}" if report.step else "starting..."
    terms = ", ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in report.losses.items() if k != "total")
    return f"step {report.step}/{report.total}: loss {report.losses['total']:.3f} ({terms}), lr {report.lr:.2e}"
