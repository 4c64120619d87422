"""Per-answer state of `plates eval` in a few bytes per answer, so scoring a million answers fits in memory.

:class:`IntMap` replaces a ``dict[int, int]`` of one entry per answer (duplicate detection, id numbering): recent
keys in a dict, older ones in sorted numpy arrays merged in batches, about 16 bytes per key instead of ~100.
:class:`Spool` keeps a column of per-answer strings in an anonymous temporary file instead of a Python list.
"""

from __future__ import annotations

import json
import tempfile
from typing import Iterator

import numpy as np

_BATCH = 1 << 12


class IntMap:
    """64-bit integer keys to 64-bit values; ``setdefault`` keeps the first value stored for a key."""

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.int64)
        self.values = np.empty(0, dtype=np.int64)
        self.recent: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.keys) + len(self.recent)

    def get(self, key: int) -> int | None:
        found = self.recent.get(key)
        if found is not None or not len(self.keys):
            return found
        at = int(np.searchsorted(self.keys, key))
        if at < len(self.keys) and self.keys[at] == key:
            return int(self.values[at])
        return None

    def setdefault(self, key: int, value: int) -> int | None:
        """The value already stored for ``key``, or None after storing ``value``."""
        found = self.get(key)
        if found is None:
            self.recent[key] = value
            if len(self.recent) >= _BATCH:
                self._merge()
        return found

    def _merge(self) -> None:
        keys = np.fromiter(self.recent.keys(), dtype=np.int64, count=len(self.recent))
        values = np.fromiter(self.recent.values(), dtype=np.int64, count=len(self.recent))
        keys, values = np.concatenate([self.keys, keys]), np.concatenate([self.values, values])
        order = np.argsort(keys, kind="stable")
        self.keys, self.values = keys[order], values[order]
        self.recent = {}


class Spool:
    """An append-only column of strings kept on disk (a temporary file removed when closed or collected)."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(mode="w+", encoding="utf-8", prefix="plates-eval-")
        self.count = 0

    def append(self, text: str) -> None:
        self.file.write(json.dumps(text, ensure_ascii=False) + "\n")
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        self.file.flush()
        self.file.seek(0)
        for _ in range(self.count):
            yield json.loads(self.file.readline())
        self.file.seek(0, 2)

    def json_items(self) -> Iterator[str]:
        """Each string as JSON text, as written (no decoding)."""
        self.file.flush()
        self.file.seek(0)
        for _ in range(self.count):
            yield self.file.readline().rstrip("\n")
        self.file.seek(0, 2)


class Rows:
    """A growing answers x columns float64 table kept in a temporary file, read back in chunks."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.file = tempfile.TemporaryFile(prefix="plates-eval-rows-")
        self.buffer: list[tuple[float, ...]] = []
        self.count = 0

    def append(self, row: tuple[float, ...]) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= 8192:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.file.write(np.asarray(self.buffer, dtype=np.float64).reshape(-1, self.width).tobytes())
            self.count += len(self.buffer)
            self.buffer = []

    def __len__(self) -> int:
        return self.count + len(self.buffer)

    def chunks(self, size: int = 4096) -> Iterator[np.ndarray]:
        """The table in consecutive blocks of at most ``size`` rows."""
        self.flush()
        self.file.flush()
        self.file.seek(0)
        left = self.count
        while left > 0:
            take = min(size, left)
            data = self.file.read(take * self.width * 8)
            yield np.frombuffer(data, dtype=np.float64).reshape(take, self.width)
            left -= take
        self.file.seek(0, 2)

    def column(self, k: int) -> np.ndarray:
        return np.concatenate([chunk[:, k] for chunk in self.chunks()] or [np.zeros(0)])
