"""Batch progress as plain values: the terminal shows them with tqdm, the widget with its bar."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchProgress:
    done: int  # images finished in this run (segmented or failed)
    failed: int
    total: int  # images this run has to do (those already done before are not counted)
    skipped: int  # images already done by an earlier run
    elapsed: float  # seconds since the first image started
    key: str | None = None  # the image that just finished
    waiting: str | None = None  # what the run waits for before its images (e.g. "loading model tiny on cpu")

    @property
    def rate(self) -> float:
        """Images per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None before the first image finishes)."""
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def text(self) -> str:
        eta = "" if self.eta is None else f", {_clock(self.eta)} left"
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.done}/{self.total} images, {self.rate:.2f}/s{eta}{failed}"


ProgressCallback = Callable[[BatchProgress], None]


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TerminalProgress:
    """A tqdm bar (images done / total, rate, ETA) fed with BatchProgress events."""

    def __init__(self, file=None, disable: bool = False):
        self._file = file or sys.stderr
        self._disable = disable
        self._bar = None
        self._wait = None  # the busy line shown while the run waits (loading the model)

    def __call__(self, event: BatchProgress) -> None:
        self._end_wait()
        if event.waiting is not None:
            if not self._disable:
                from napari_odise.cli.busy import Busy

                self._wait = Busy(event.waiting, self._file).start()
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=event.total, unit="img", file=self._file, disable=self._disable, dynamic_ncols=True)
        self._bar.update(event.done - self._bar.n)
        if event.failed:
            self._bar.set_postfix(failed=event.failed, refresh=False)

    def _end_wait(self, ok: bool = True) -> None:
        if self._wait is not None:
            self._wait.finish(ok)
            self._wait = None

    def close(self, ok: bool = True) -> None:
        self._end_wait(ok)
        if self._bar is not None:
            self._bar.close()
