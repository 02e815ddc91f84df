"""An append-only journal of records in numbered segment files, fsynced per append.

Each record has a position (`lsn`, counting from 1); readers resume from a position
they stored elsewhere, and `trim` drops segments every reader is past. A record is
framed with its length and CRC32, so a write torn by a crash is found and cut off
at the next open. Used for the rule engine's journal (docs/ingest.md).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Final

from core.exceptions import JournalError

log = logging.getLogger(__name__)

_HEADER: Final = struct.Struct(">II")  # payload length, CRC32 of the payload
_SUFFIX: Final = ".seg"
_MAX_RECORD: Final = 256 * 1024 * 1024
_READ_CHUNK: Final = 4 * 1024 * 1024


class Journal:
    """Records appended in order to `<folder>/<first lsn>.seg`; a segment rotates at `max_bytes`."""

    def __init__(self, folder: Path, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create the journal folder {folder}: {exc}; check its permissions"
            raise JournalError(msg) from exc
        self._lock = asyncio.Lock()
        # Set after each append, for a reader in the same process waiting for more.
        self.appended = asyncio.Event()
        # Per reader, the last position it no longer needs; segments go once all are past.
        self._marks: dict[str, int] = {}
        self._handle: BinaryIO | None = None
        self._size = 0
        self.next_lsn = 1
        self._open_tail()

    # -- writing -----------------------------------------------------------------------

    def _open_tail(self) -> None:
        """Find the next position, cutting off a torn last record; open the last segment."""
        bases = self.segments()
        if not bases:
            self._start_segment(1)
            return
        base = bases[-1]
        path = self.path_of(base)
        count, good = _scan(path)
        if good < path.stat().st_size:
            log.warning(
                "journal %s: cutting a torn record at byte %d (a crash mid-write; "
                "it was never acknowledged)",
                path,
                good,
            )
            with path.open("r+b") as handle:
                handle.truncate(good)
        self.next_lsn = base + count
        self._handle = path.open("ab")
        self._size = good

    def _start_segment(self, base: int) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = self.path_of(base).open("ab")
        self._size = 0
        _fsync_dir(self.folder)

    def append_sync(self, payloads: Sequence[bytes]) -> int:
        """Write the records and fsync once; return the position of the last (blocking)."""
        if not payloads:
            return self.next_lsn - 1
        if self._size >= self.max_bytes:
            self._start_segment(self.next_lsn)
        handle = self._handle
        assert handle is not None
        pack = _HEADER.pack
        crc32 = zlib.crc32
        data = b"".join(pack(len(p), crc32(p)) + p for p in payloads)
        try:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            msg = f"cannot write the journal {self.folder}: {exc}; free disk space or fix it"
            raise JournalError(msg) from exc
        self._size += len(data)
        self.next_lsn += len(payloads)
        return self.next_lsn - 1

    async def append(self, payloads: Sequence[bytes]) -> int:
        """`append_sync` in a thread, so the event loop keeps reading while the disk syncs."""
        async with self._lock:
            last = await asyncio.to_thread(self.append_sync, payloads)
        self.appended.set()
        return last

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    # -- reading and trimming -------------------------------------------------------------

    def read_from(self, lsn: int) -> Iterator[tuple[int, bytes]]:
        """Every record at position `lsn` or later, in order, as (position, payload)."""
        bases = self.segments()
        for i, base in enumerate(bases):
            end = bases[i + 1] if i + 1 < len(bases) else None
            if end is not None and end <= lsn:
                continue
            position = base
            for payload in _records(self.path_of(base)):
                if position >= lsn:
                    yield position, payload
                position += 1

    def reader(self, lsn: int) -> JournalReader:
        """A reader that returns the records from position `lsn` on, a few at a time."""
        return JournalReader(self, lsn)

    def register(self, reader: str, done: int = 0) -> None:
        """Keep records after `done` until `reader` marks them done (a reader must register)."""
        self._marks.setdefault(reader, done)

    def mark(self, reader: str, done: int) -> int:
        """`reader` no longer needs records up to `done`; drop segments every reader is past."""
        self._marks[reader] = max(self._marks.get(reader, 0), done)
        return self.trim(below=min(self._marks.values()) + 1)

    def trim(self, below: int) -> int:
        """Delete the segments whose records all lie before position `below`; return how many."""
        bases = self.segments()
        removed = 0
        for base, following in itertools.pairwise(bases):
            if following > below:
                break
            self.path_of(base).unlink(missing_ok=True)
            removed += 1
        return removed

    def segments(self) -> list[int]:
        """The first positions of the segment files, oldest first."""
        return sorted(int(p.stem) for p in self.folder.glob(f"*{_SUFFIX}") if p.stem.isdigit())

    def path_of(self, base: int) -> Path:
        """The file of the segment that starts at position `base`."""
        return self.folder / f"{base:020d}{_SUFFIX}"


class JournalReader:
    """Follows a journal as it grows: each `read` returns the records written since the last."""

    def __init__(self, journal: Journal, lsn: int) -> None:
        self.journal = journal
        self.lsn = lsn  # the position of the next record to return
        self._base: int | None = None
        self._offset = 0

    def read(self, limit: int = 10_000) -> list[tuple[int, bytes]]:
        """Up to `limit` whole records at `self.lsn` and after (none if there are none yet)."""
        out: list[tuple[int, bytes]] = []
        while len(out) < limit:
            if self._base is None and not self._seek():
                break
            assert self._base is not None
            got = self._read_segment(self._base, limit - len(out), out)
            if got:
                continue
            following = [b for b in self.journal.segments() if b > self._base]
            if not following or following[0] > self.lsn:
                break  # the writer has not rotated past this segment's end: wait for more
            self._base, self._offset = following[0], 0
        return out

    def _seek(self) -> bool:
        """Find the segment holding `self.lsn` and the byte offset of that record."""
        bases = [b for b in self.journal.segments() if b <= self.lsn]
        if not bases:
            bases = self.journal.segments()[:1]
            if not bases:
                return False
            self.lsn = max(self.lsn, bases[0])
        base = bases[-1]
        offset, position = 0, base
        for payload in _records(self.journal.path_of(base)):
            if position >= self.lsn:
                break
            offset += _HEADER.size + len(payload)
            position += 1
        self._base, self._offset, self.lsn = base, offset, position
        return True

    def _read_segment(self, base: int, limit: int, out: list[tuple[int, bytes]]) -> int:
        path = self.journal.path_of(base)
        try:
            with path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read(_READ_CHUNK)
                if len(data) == _READ_CHUNK:
                    length = _HEADER.unpack_from(data)[0]
                    if length + _HEADER.size > _READ_CHUNK:  # one record larger than a chunk
                        data += handle.read(length + _HEADER.size - _READ_CHUNK)
        except FileNotFoundError:
            self._base = None
            return 0
        got = consumed = 0
        for end, payload in itertools.islice(_frames(data), limit):
            out.append((self.lsn, payload))
            self.lsn += 1
            got += 1
            consumed = end
        self._offset += consumed
        return got


def read_folder(folder: Path) -> Iterator[bytes]:
    """Every whole record in a journal folder, oldest first, without opening it for writing."""
    for path in sorted(folder.glob(f"*{_SUFFIX}")):
        yield from _records(path)


def _records(path: Path) -> Iterator[bytes]:
    """The whole records of one segment; stops at a torn or corrupt one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # trimmed while we looked
        return
    for _, payload in _frames(data):
        yield payload


def _frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset just past it, payload) of each whole record in `data`; stops at a torn one."""
    offset, size, unpack = 0, len(data), _HEADER.unpack_from
    while offset + _HEADER.size <= size:
        length, crc = unpack(data, offset)
        start = offset + _HEADER.size
        end = start + length
        if length > _MAX_RECORD or end > size or zlib.crc32(data[start:end]) != crc:
            return  # torn by a crash, or still being written
        yield end, data[start:end]
        offset = end


def _scan(path: Path) -> tuple[int, int]:
    """(whole records, bytes they fill) of one segment."""
    count = good = 0
    for end, _ in _frames(path.read_bytes()):
        count += 1
        good = end
    return count, good


def _fsync_dir(folder: Path) -> None:
    # A new segment's name must survive a crash as well as its contents.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
