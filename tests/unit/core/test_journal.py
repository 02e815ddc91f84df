"""The journal keeps every appended record, in order, across rotation, reopening and torn writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.journal import Journal


def payloads(start: int, count: int) -> list[bytes]:
    return [f"record {i}".encode() * (i % 5 + 1) for i in range(start, start + count)]


def test_append_then_read_from_any_position(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    assert journal.append_sync(payloads(0, 10)) == 10
    assert journal.append_sync(payloads(10, 5)) == 15
    assert [p for _, p in journal.read_from(1)] == payloads(0, 15)
    assert [lsn for lsn, _ in journal.read_from(12)] == [12, 13, 14, 15]


def test_rotation_keeps_positions_and_trim_drops_only_what_is_behind(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", max_bytes=200)
    for i in range(20):
        journal.append_sync(payloads(i * 3, 3))
    assert len(journal.segments()) > 3
    assert [p for _, p in journal.read_from(1)] == payloads(0, 60)
    journal.trim(below=31)
    remaining = [lsn for lsn, _ in journal.read_from(1)]
    assert remaining[0] <= 31 and remaining[-1] == 60
    assert remaining == list(range(remaining[0], 61))  # whole segments went, no holes
    assert [lsn for lsn, _ in journal.read_from(31)] == list(range(31, 61))


def test_reopen_continues_the_numbering(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", max_bytes=100)
    journal.append_sync(payloads(0, 7))
    journal.close()
    again = Journal(tmp_path / "j", max_bytes=100)
    assert again.next_lsn == 8
    assert again.append_sync(payloads(7, 3)) == 10
    assert [p for _, p in again.read_from(1)] == payloads(0, 10)


def test_a_torn_last_record_is_cut_off_at_open(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append_sync(payloads(0, 4))
    journal.close()
    segment = journal.path_of(journal.segments()[-1])
    whole = segment.read_bytes()
    segment.write_bytes(whole + whole[:11])  # a crash in the middle of the next write
    again = Journal(tmp_path / "j")
    assert again.next_lsn == 5
    assert segment.stat().st_size == len(whole)
    again.append_sync([b"after"])
    assert [p for _, p in again.read_from(1)] == [*payloads(0, 4), b"after"]


def test_reader_follows_the_writer_across_rotation(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", max_bytes=150)
    reader = journal.reader(1)
    assert reader.read() == []
    seen: list[bytes] = []
    expected: list[bytes] = []
    for i in range(12):
        batch = payloads(i * 4, 4)
        asyncio.run(journal.append(batch))
        expected += batch
        seen += [p for _, p in reader.read(limit=3)]  # a slow reader, behind the writer
    while chunk := reader.read(limit=5):
        seen += [p for _, p in chunk]
    assert seen == expected
    assert reader.lsn == journal.next_lsn


def test_reader_resumes_from_a_stored_position(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", max_bytes=120)
    journal.append_sync(payloads(0, 30))
    reader = journal.reader(17)
    got = reader.read()
    assert [lsn for lsn, _ in got] == list(range(17, 31))
    assert [p for _, p in got] == payloads(16, 14)


def test_segments_stay_until_every_registered_reader_is_past_them(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", max_bytes=100)
    journal.register("rules")
    journal.register("alerts")
    for i in range(10):
        journal.append_sync(payloads(i * 3, 3))
    first = journal.segments()[0]
    journal.mark("rules", 30)
    assert journal.segments()[0] == first  # alerts have not read anything yet
    journal.mark("alerts", 12)
    assert next(lsn for lsn, _ in journal.read_from(1)) <= 13
    journal.mark("alerts", 30)
    assert len(journal.segments()) == 1
    assert journal.append_sync([b"more"]) == 31
