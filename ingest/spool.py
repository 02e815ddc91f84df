"""A disk spool of line-protocol batches InfluxDB could not take yet, replayed in order.

One file per batch, named by a growing sequence number. A batch is written to
a temporary name, fsynced and renamed, so after a crash a segment is either
whole or absent; only then is the batch acknowledged to the broker.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Final

from ingest.exceptions import SpoolError

_SUFFIX: Final = ".lp"


class Spool:
    """Ordered batches on disk; not thread-safe (one asyncio loop owns it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create the spool folder {folder}: {exc}; set CAREWATCH_STATE_DIR"
            raise SpoolError(msg) from exc
        for stale in folder.glob("*.tmp"):
            stale.unlink()  # a batch that was never acknowledged: the broker redelivers it
        self._segments = deque(sorted(int(p.stem) for p in folder.glob(f"*{_SUFFIX}")))
        self._next = (self._segments[-1] + 1) if self._segments else 0
        self.bytes = sum(self._path(s).stat().st_size for s in self._segments)

    def _path(self, segment: int) -> Path:
        return self.folder / f"{segment:012d}{_SUFFIX}"

    def __len__(self) -> int:
        return len(self._segments)

    def append(self, body: bytes) -> None:
        """Store one batch durably (fsync), after every batch stored before it."""
        segment = self._next
        final = self._path(segment)
        tmp = final.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, final)
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            msg = f"cannot write spool segment {final}: {exc}; free disk space under {self.folder}"
            raise SpoolError(msg) from exc
        self._next += 1
        self._segments.append(segment)
        self.bytes += len(body)

    def peek(self) -> tuple[int, bytes] | None:
        """The oldest batch, or None when the spool is empty."""
        if not self._segments:
            return None
        segment = self._segments[0]
        return segment, self._path(segment).read_bytes()

    def remove(self, segment: int) -> None:
        """Forget the oldest batch once InfluxDB has it."""
        if not self._segments or self._segments[0] != segment:
            msg = f"spool segment {segment} is not the oldest; replay must go in order"
            raise SpoolError(msg)
        path = self._path(segment)
        self.bytes -= path.stat().st_size
        path.unlink()
        self._segments.popleft()
