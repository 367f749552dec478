"""Which kept query owns each pixel in the panoptic merge, in one fused pass over the kept masks.

Each pixel goes to the kept query with the highest ``score * p`` (the first on ties) and keeps the
label only where the owner's own ``p >= 0.5``. This is most of the cost of a vocabulary change, so
it runs as one compiled loop (numba) over the kept masks that also counts each query's pixels: the
same steps as PyTorch reductions, gathers and counts took two to four times longer. The arithmetic
is the same float32 multiply and comparison, so the outcome is bit-identical to the official
argmax (checked against a dense argmax and the query-by-query path in the tests).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange

# numba's fallback threading layer ("workqueue", where OpenMP and TBB are missing) aborts the
# process when two threads run parallel code at once; the widgets and batch jobs use threads.
_KERNEL_LOCK = threading.Lock()


@dataclass
class Ownership:
    """The merge's per-pixel outcome, as counts per kept query and a painter for the label map."""

    assigned_area: list[int]  # pixels each kept query wins
    kept_area: list[int]  # ... of which inside its own mask (p >= 0.5)
    original_area: list[int]  # pixels of its own mask, won or not
    _paint: object  # segment id per kept query (int32) -> (H, W) int32 label map

    def label_map(self, segment_of: torch.Tensor) -> torch.Tensor:
        return self._paint(segment_of)


def ownership_from_maps(owner: torch.Tensor, foreground: torch.Tensor, original_area: list[int]) -> Ownership:
    """From full-size maps: owner (H, W) positions in the kept list, foreground (H, W) bool."""
    k = len(original_area)
    assigned = torch.bincount(owner.flatten(), minlength=k).tolist()
    # pixels outside the owner's own mask count in an extra bin (cheaper than selecting them)
    kept = torch.bincount(torch.where(foreground, owner, k).flatten(), minlength=k + 1)[:-1].tolist()

    def paint(segment_of):
        return torch.where(foreground, segment_of[owner], torch.zeros((), dtype=torch.int32))

    return Ownership(assigned, kept, original_area, paint)


def fused_ownership(dense: torch.Tensor, queries: list[int], scores: torch.Tensor, original_area: list[int]) -> Ownership:
    """Ownership over kept full-size masks ``dense`` (Q, H, W) float32 probabilities."""
    q, h, w = dense.shape
    values = dense.reshape(q, h * w).numpy()
    kept = np.asarray(queries, dtype=np.int64)
    kept_scores = scores.float().numpy()
    owner = np.empty(h * w, dtype=np.int32)
    foreground = np.empty(h * w, dtype=np.bool_)
    chunks = _chunks(h * w)
    counts = np.zeros((len(chunks) - 1, 2, len(queries)), dtype=np.int64)
    with _KERNEL_LOCK:
        _assign(values, kept, kept_scores, chunks, owner, foreground, counts)
    assigned, inside = counts.sum(0)

    def paint(segment_of):
        labels = np.empty(owner.shape, dtype=np.int32)
        with _KERNEL_LOCK:
            _paint(owner, foreground, segment_of.numpy().astype(np.int32), chunks, labels)
        return torch.from_numpy(labels.reshape(h, w))

    return Ownership(assigned.tolist(), inside.tolist(), original_area, paint)


def _chunks(n: int, size: int = 1 << 11) -> np.ndarray:
    return np.append(np.arange(0, n, size), n).astype(np.int64)


@njit(parallel=True, cache=True, nogil=True)
def _assign(values, kept, kept_scores, chunks, owner, foreground, counts):  # pragma: no cover - compiled
    for c in prange(len(chunks) - 1):
        start, stop = chunks[c], chunks[c + 1]
        n = stop - start
        best = np.full(n, -np.inf, dtype=np.float32)
        winner = np.zeros(n, dtype=np.int32)
        for k in range(len(kept)):  # ascending query order; strict > keeps the first maximum
            row = values[kept[k], start:stop]
            score = kept_scores[k]
            position = np.int32(k)
            for i in range(n):  # branch-free, so the loop vectorises
                weighted = score * row[i]
                better = weighted > best[i]
                best[i] = weighted if better else best[i]
                winner[i] = position if better else winner[i]
        for i in range(n):
            k = winner[i]
            inside = values[kept[k], start + i] >= 0.5
            owner[start + i] = k
            foreground[start + i] = inside
            counts[c, 0, k] += 1
            counts[c, 1, k] += inside


@njit(parallel=True, cache=True, nogil=True)
def _paint(owner, foreground, segment_of, chunks, labels):  # pragma: no cover - compiled
    for c in prange(len(chunks) - 1):
        for i in range(chunks[c], chunks[c + 1]):
            labels[i] = segment_of[owner[i]] if foreground[i] else 0
