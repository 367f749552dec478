"""Keeps the full-size masks of recently encoded images, so a vocabulary change re-weights them.

Entries are weakly keyed by the EncodedImage (dropped with it) and bounded by a byte budget
(oldest first out), given per call by the settings in use. An image too large for the budget is
simply streamed each time. One model may serve several widgets' threads: a lock guards the entries.
"""

from __future__ import annotations

import threading
import weakref

from .postprocess import MaskGeometry, QueryMasks


class MaskCache:
    def __init__(self):
        self._entries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __deepcopy__(self, memo) -> "MaskCache":
        """A copied model starts with an empty cache (entries are derived data; the lock is per object)."""
        return MaskCache()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def used_bytes(self) -> int:
        return sum(m.dense_bytes for m in self._entries.values())

    def get(self, encoded, mask_logits, geometry: MaskGeometry, budget_bytes: int) -> QueryMasks:
        with self._lock:
            masks = self._entries.get(encoded)
            if masks is not None:
                self._entries.pop(encoded)
                self._entries[encoded] = masks  # most recently used last
                return masks
            masks = QueryMasks(mask_logits, geometry)
            if masks.dense_bytes <= budget_bytes:
                while self._entries and self.used_bytes + masks.dense_bytes > budget_bytes:
                    oldest = next(iter(self._entries))
                    self._entries.pop(oldest)
                masks.materialize()
                self._entries[encoded] = masks
            return masks

    def clear(self):
        with self._lock:
            self._entries.clear()
