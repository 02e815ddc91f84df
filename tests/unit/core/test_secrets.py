"""The signing key kept in the state folder: one key, whoever creates it, never an empty one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import multiprocessing
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from alerts import links
from core.secrets import create_access_token, derive_key, load_or_create_secret, token_subject


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


SECRET = "the-service-secret-key-0123456789abcdef"


def test_a_token_without_an_expiry_or_a_subject_is_refused() -> None:
    key = derive_key(SECRET, "access-token")
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert token_subject(create_access_token("7", SECRET, timedelta(minutes=5)), SECRET) == "7"
    assert token_subject(jwt.encode({"sub": "1"}, key, algorithm="HS256"), SECRET) is None
    assert token_subject(jwt.encode({"exp": later}, key, algorithm="HS256"), SECRET) is None


def test_the_secret_itself_signs_neither_tokens_nor_links() -> None:
    """Each use has its own key: what one signs, the other does not accept."""
    later = datetime.now(UTC) + timedelta(minutes=5)
    raw = jwt.encode({"sub": "1", "exp": later}, SECRET, algorithm="HS256")
    assert token_subject(raw, SECRET) is None
    by_link_key = jwt.encode(
        {"sub": "1", "exp": later}, derive_key(SECRET, "ack-link"), algorithm="HS256"
    )
    assert token_subject(by_link_key, SECRET) is None
    expires = int(later.timestamp())
    token = links.sign(SECRET, 42, "contact:3", expires)
    assert links.verify(SECRET, token, expires - 60) is not None
    payload, _, _mac = token.rpartition("-")
    mac = base64.urlsafe_b64encode(
        hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).digest()
    ).decode()[:16]
    assert links.verify(SECRET, f"{payload}-{mac}", expires - 60) is None
