"""What a batch did: images done now, skipped as already done, failures with their reasons, and
input names that were no regular files (FIFOs, dangling links, link loops).

Written to ``<out>/batch_summary.json`` at the end of every run (also a cancelled or interrupted
one, and one stopped because the folder could not take more, when it still takes this file),
so the failures of an overnight job can be read the next morning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from napari_odise.io.stable_json import write_json

SUMMARY_NAME = "batch_summary.json"


@dataclass
class Failure:
    key: str
    reason: str


@dataclass
class BatchSummary:
    total: int = 0  # images (pages) and unreadable files this run was responsible for
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # done now, but no segment was kept
    without_overlay: list[str] = field(default_factory=list)  # relabel: image gone, overlay removed
    cancelled: bool = False
    seconds: float = 0.0
    shard: str | None = None
    cleaned: int = 0  # unfinished groups of a killed run that were removed
    stopped: str | None = None  # why the run itself stopped early (disk full, read-only folder)
    ignored: list[Failure] = field(default_factory=list)  # input names that are no regular file (FIFO, bad link)

    @property
    def all_failed(self) -> bool:
        """Failures and nothing else: the exit code's "it did not work at all" case."""
        return bool(self.failed) and not self.done and not self.skipped

    @property
    def exit_code(self) -> int:
        return 1 if self.all_failed else 0

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "done": sorted(self.done),
            "skipped": sorted(self.skipped),
            "empty": sorted(self.empty),
            "failed": [{"key": f.key, "reason": f.reason} for f in sorted(self.failed, key=lambda f: f.key)],
            "cancelled": self.cancelled,
            "seconds": round(self.seconds, 3),
            "shard": self.shard,
            "cleaned": self.cleaned,
            "stopped": self.stopped,
            "ignored": [{"path": f.key, "reason": f.reason} for f in sorted(self.ignored, key=lambda f: f.key)],
        }

    def write(self, out: str | Path) -> Path:
        return write_json(Path(out) / SUMMARY_NAME, self.to_dict(), indent=1)

    def text(self) -> str:
        processed = len(self.done)
        rate = f", {processed / self.seconds:.2f} images/s" if processed and self.seconds > 0 else ""
        lines = [
            f"{processed} segmented, {len(self.skipped)} already done, {len(self.failed)} failed "
            f"(of {self.total}) in {self.seconds:.1f} s{rate}"
            + (" - cancelled, run again to resume" if self.cancelled else "")
        ]
        if self.stopped:
            lines.append(f"stopped: {self.stopped}")
        if self.empty:
            lines.append(f"{count_images(len(self.empty))} kept no segment: {_listed(self.empty)}")
        if self.without_overlay:
            lines.append(
                f"{count_images(len(self.without_overlay))} without an overlay (the image file is gone or was not "
                f"recorded): {_listed(self.without_overlay)}; run segment again with the same inputs to draw them"
            )
        if self.ignored:
            lines.append(
                f"ignored {len(self.ignored)} input name(s) that are not regular files: "
                + "; ".join(f"{f.key} ({f.reason})" for f in sorted(self.ignored, key=lambda f: f.key)[:3])
                + (f" and {len(self.ignored) - 3} more" if len(self.ignored) > 3 else "")
            )
        if self.cleaned:
            lines.append(f"removed {self.cleaned} unfinished result(s) of an interrupted run")
        for failure in sorted(self.failed, key=lambda f: f.key):
            lines.append(f"  failed: {failure.key}: {failure.reason}")
        return "\n".join(lines)


def count_images(count: int) -> str:
    """The count with its noun: 1 image, 3 images."""
    return f"{count} image" if count == 1 else f"{count} images"


def _listed(keys: list[str], shown: int = 3) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more
