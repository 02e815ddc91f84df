"""The signing key kept in the state folder: one key, whoever creates it, never an empty one."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from core.secrets import load_or_create_secret


def _create(folder: str, results: multiprocessing.Queue[str]) -> None:
    results.put(load_or_create_secret(Path(folder)))


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[str] = context.Queue()
    procs = [context.Process(target=_create, args=(str(tmp_path), results)) for _ in range(8)]
    for proc in procs:
        proc.start()
    keys = {results.get(timeout=30) for _ in procs}
    for proc in procs:
        proc.join(30)
    assert len(keys) == 1
    (key,) = keys
    assert len(key) >= 32
    assert (tmp_path / "secret_key").read_text() == key
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no temporary left


def test_an_empty_key_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("")
    key = load_or_create_secret(tmp_path)
    assert len(key) >= 32
    assert load_or_create_secret(tmp_path) == key
