"""CLIP text embeddings kept on disk, so a vocabulary is embedded once per machine, not per start.

One SQLite file per set of CLIP weights (named by the weights file's sha256): string -> float32
embedding. SQLite makes every write atomic and lets several processes (napari and a batch job) read
and write the same file; the file is bounded (least recently used strings go first) and lives in
the conversion cache, so ``napari-odise weights clear-cache`` removes it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from .paths import cache_dir

FOLDER = "text-embeddings"
DEFAULT_LIMIT_MB = 512  # about 170,000 embeddings of 768 floats: every preset several times over
_SCHEMA = "CREATE TABLE IF NOT EXISTS embeddings (text TEXT PRIMARY KEY, vector BLOB NOT NULL, used REAL NOT NULL)"


def store_path(clip_digest: str, dtype: torch.dtype | None = None) -> Path:
    """One file per CLIP weights and per dtype they run in (a bfloat16 CLIP embeds a little
    differently: its strings must not be served to a float32 model)."""
    suffix = "" if dtype in (None, torch.float32) else "-" + str(dtype).removeprefix("torch.")
    return cache_dir() / FOLDER / f"clip-{clip_digest[:16]}{suffix}.sqlite"


class TextEmbeddingStore:
    """``get_many`` / ``put_many`` of (D,) float32 embeddings by exact string."""

    def __init__(self, path: str | Path, limit_mb: int = DEFAULT_LIMIT_MB):
        self.path = Path(path)
        self.limit_bytes = limit_mb * 2**20
        self._lock = threading.Lock()  # one connection per store, used from any thread
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def __deepcopy__(self, memo) -> TextEmbeddingStore:
        return self  # a copied model shares the store (one connection, guarded by the lock)

    @classmethod
    def for_clip(cls, clip_digest: str, dtype: torch.dtype | None = None, **options) -> TextEmbeddingStore:
        return cls(store_path(clip_digest, dtype), **options)

    def get_many(self, texts: Iterable[str]) -> dict[str, torch.Tensor]:
        texts = list(dict.fromkeys(texts))
        found: dict[str, torch.Tensor] = {}
        now = time.time()
        with self._lock:
            for start in range(0, len(texts), 500):  # SQLite's limit on bound parameters
                chunk = texts[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT text, vector FROM embeddings WHERE text IN ({marks})", chunk)
                found.update((text, torch.from_numpy(np.frombuffer(blob, np.float32).copy())) for text, blob in rows)
                self._db.execute(f"UPDATE embeddings SET used = ? WHERE text IN ({marks})", [now, *chunk])
        return found

    def put_many(self, embeddings: dict[str, torch.Tensor]) -> None:
        now = time.time()
        rows = [(text, v.detach().float().cpu().numpy().tobytes(), now) for text, v in embeddings.items()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", rows)
                self._evict()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _evict(self) -> None:
        size = self._db.execute("SELECT COALESCE(SUM(LENGTH(vector)), 0), COUNT(*) FROM embeddings").fetchone()
        total, count = size
        if total <= self.limit_bytes or count == 0:
            return
        keep = int(count * self.limit_bytes / total)
        self._db.execute(
            "DELETE FROM embeddings WHERE text NOT IN (SELECT text FROM embeddings ORDER BY used DESC LIMIT ?)",
            (keep,),
        )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
