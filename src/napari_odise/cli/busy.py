"""A line that says what the command is waiting for, so a long model load is not a silence.

On a terminal the line counts the seconds while it waits; in a log (not a terminal) it is written
once when the wait starts and once when it ends, with the time it took.
"""

from __future__ import annotations

import sys
import threading
import time


class Busy:
    """``with Busy("loading model tiny on cpu"):`` shows ``loading model tiny on cpu ... 12 s``."""

    def __init__(self, message: str, file=None, interval: float = 0.5):
        self.message = message
        self.stream = file or sys.stderr
        self.interval = interval
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._started = 0.0

    def start(self) -> Busy:
        self._started = time.perf_counter()
        if self.live:
            self._write(f"{self.message} ...")
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        else:
            self._write(f"{self.message} ...\n")
        return self

    def finish(self, ok: bool = True) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        ending = f"done in {time.perf_counter() - self._started:.1f} s" if ok else "stopped"
        self._write(f"{chr(13) if self.live else ''}{self.message}: {ending}\n")

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._write(f"\r{self.message} ... {time.perf_counter() - self._started:.0f} s")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def __enter__(self) -> Busy:
        return self.start()

    def __exit__(self, kind, value, traceback) -> None:
        self.finish(ok=kind is None)
