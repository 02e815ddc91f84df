"""The spool keeps batches in order across restarts and forgets half-written ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.exceptions import SpoolError
from ingest.spool import Spool


def test_order_survives_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(f"batch {i}".encode())
    (tmp_path / "000000000099.tmp").write_bytes(b"half written, never acknowledged")
    again = Spool(tmp_path)
    assert len(again) == 5
    assert again.bytes == sum(len(f"batch {i}") for i in range(5))
    assert not list(tmp_path.glob("*.tmp"))
    seen = []
    while (head := again.peek()) is not None:
        segment, body = head
        seen.append(body.decode())
        again.remove(segment)
    assert seen == [f"batch {i}" for i in range(5)]
    again.append(b"next")
    assert again.peek() == (5, b"next")  # numbering goes on, never reuses


def test_removal_must_be_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"a")
    spool.append(b"b")
    with pytest.raises(SpoolError, match="in order"):
        spool.remove(1)


def test_unwritable_folder_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match="CAREWATCH_STATE_DIR"):
        Spool(blocker / "spool")
