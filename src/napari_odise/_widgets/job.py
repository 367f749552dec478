"""Long model work as a generator of progress reports, stoppable between any two reports.

The predictor reports progress through a callback from deep inside ``predict``; a generator cannot
yield from there. So the work runs in a helper thread that hands its reports over a queue, and the
generator (what napari's ``thread_worker`` drives) yields them as they arrive. Cancelling sets an
event; the work's next report then raises :class:`_Cancelled` inside the predictor, which unwinds
the run, and the generator returns ``None`` instead of a result. Nothing is half-applied, because
results are only ever applied by whoever receives the generator's return value.

Some work reports nothing for a long time: loading the official model takes 30-50 s inside one
call that cannot be interrupted. A cancel then does not wait for it: the generator returns
``None`` at once and the helper thread is left to finish on its own (its result is dropped; a
model it loaded stays in the pool, so the next Run starts without loading).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

from napari_odise.errors import OdiseError

T = TypeVar("T")

_POLL_S = 0.1  # how soon a cancel is noticed while the work reports nothing

# Share of one plane's progress bar each predictor stage takes (the backbone dominates).
_STAGE_SPAN = {"load": (0.0, 0.0), "backbone": (0.0, 0.8), "decoder": (0.8, 0.9), "classify": (0.9, 1.0)}


class _Cancelled(Exception):
    """Raised from the progress callback to stop a run the user cancelled."""


class JobError(OdiseError):
    """The work failed; the message is the original error's, the original is ``__cause__`` (a
    :class:`~napari_odise.errors.UserError` to show, or anything else: a bug).

    Not a RuntimeError on purpose: superqt's generator worker takes a RuntimeError for "the worker
    was deleted", swallows it and never emits ``finished`` (missing weights and out-of-memory
    errors are RuntimeErrors).
    """


@dataclass(frozen=True)
class Progress:
    stage: str  # "load", "backbone", "decoder", "classify"
    done: int
    total: int
    plane: int = 0  # index of the plane being segmented
    planes: int = 1

    @property
    def fraction(self) -> float:
        """0..1 over the whole run (all planes)."""
        start, end = _STAGE_SPAN.get(self.stage, (0.0, 1.0))
        within = self.done / self.total if self.total else 0.0
        return min(1.0, (self.plane + start + (end - start) * within) / max(self.planes, 1))

    def text(self) -> str:
        if self.stage == "load":
            return "loading the model..."
        where = f"plane {self.plane + 1}/{self.planes}: " if self.planes > 1 else ""
        step = f" {self.done}/{self.total}" if self.stage == "backbone" else ""
        return f"{where}{self.stage}{step}"


class Job:
    """A cancel flag plus the report function work calls; ``run`` turns work into a generator."""

    def __init__(self):
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the helper thread has stopped (it stops at the next report after cancel)."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """The helper thread still runs (after an abandoning cancel: until its call returns)."""
        return self._thread is not None and self._thread.is_alive()

    def run(
        self, work: Callable[[Callable[[Progress], None]], T], interrupt: bool = True
    ) -> Generator[Progress, None, T | None]:
        """Yield ``work``'s progress reports; return its result, or None when cancelled.

        ``interrupt``: after :meth:`cancel`, the work's next report raises inside it (unwinding
        the predictor at once). With False the report is dropped instead, for work that checks
        :attr:`cancelled` itself to stop cleanly (fine-tuning saves a checkpoint first).
        Errors raised by ``work`` are raised again here as :class:`JobError` (so the worker
        reports them).
        """
        reports: queue.Queue = queue.Queue()

        def report(progress: Progress) -> None:
            if self._cancel.is_set():
                if interrupt:
                    raise _Cancelled
                return
            reports.put(("progress", progress))

        def target():
            try:
                reports.put(("done", work(report)))
            except _Cancelled:
                reports.put(("cancelled", None))
            except BaseException as error:  # noqa: BLE001 - handed to the consumer thread
                reports.put(("error", error))

        self._thread = threading.Thread(target=target, name="napari-odise-job", daemon=True)
        self._thread.start()
        kind = "progress"
        abandoned = False
        try:
            while kind == "progress":
                try:
                    kind, value = reports.get(timeout=_POLL_S)
                except queue.Empty:
                    if interrupt and self._cancel.is_set():
                        abandoned = True  # inside a call that reports nothing: do not wait for it
                        return None
                    continue
                if kind == "progress":
                    yield value
            if kind == "error":
                raise JobError(str(value)) from value
            return value if kind == "done" and not self._cancel.is_set() else None
        finally:
            if kind == "progress":  # closed early (the consumer stopped iterating): stop the helper
                self._cancel.set()
            if not abandoned:
                self._thread.join()
