"""Passwords, access tokens and API keys: what is stored is a hash, what is handed out expires."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import jwt
from pwdlib import PasswordHash

ALGORITHM: Final = "HS256"
API_KEY_PREFIX: Final = "cwk"
_hasher = PasswordHash.recommended()  # argon2id


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    return _hasher.verify(password, password_hash)


async def check_password(password: str, password_hash: str | None) -> bool:
    """`verify_password` in a thread (argon2 takes about 280 ms, not on the event loop that
    also ingests and pages). Without a hash (no such user) a dummy one is checked, so an
    unknown username answers as slowly as a wrong password."""
    if password_hash is None:
        await asyncio.to_thread(_verify_dummy, password)
        return False
    return await asyncio.to_thread(_hasher.verify, password, password_hash)


def _verify_dummy(password: str) -> None:
    _hasher.verify(password, _dummy_hash())  # made here, in the thread, the first time


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


@functools.lru_cache(maxsize=16)
def derive_key(secret: str, purpose: str) -> bytes:
    """A key for one purpose from the service's secret: an access token's key cannot sign
    an acknowledgement link, nor the other way round."""
    return hmac.new(secret.encode(), f"carewatch:{purpose}".encode(), hashlib.sha256).digest()


def create_access_token(subject: str, secret: str, lifetime: timedelta) -> str:
    expires = datetime.now(UTC) + lifetime
    key = derive_key(secret, "access-token")
    return jwt.encode({"sub": subject, "exp": expires}, key, algorithm=ALGORITHM)


def token_subject(token: str, secret: str) -> str | None:
    """The user a token names, or None if it is forged, malformed, expired, or lacks either."""
    try:
        payload = jwt.decode(
            token,
            derive_key(secret, "access-token"),
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"]},  # a token that never expires is refused
        )
    except jwt.PyJWTError:
        return None
    subject = payload.get("sub")
    return subject if isinstance(subject, str) else None


def new_api_key() -> tuple[str, str, str]:
    """(the key to hand out once, its lookup prefix, the hash to store)."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    return f"{API_KEY_PREFIX}_{prefix}_{secret}", prefix, hash_api_key(secret)


def split_api_key(key: str) -> tuple[str, str] | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
        return None
    return parts[1], parts[2]


def hash_api_key(secret: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(secret.encode()).hexdigest()


def new_device_password() -> str:
    return secrets.token_urlsafe(18)


def load_or_create_secret(state_dir: Path) -> str:
    """The token signing key: from the state folder, created (0600) on first start.

    Written whole under a temporary name and linked into place: two processes starting
    together (API and ingest) agree on one key, and a crash leaves no empty key file.
    An empty one (left by an older version) is replaced.
    """
    path = state_dir / "secret_key"
    key = _read_key(path)
    if key:
        return key
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    tmp = state_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(tmp, path)  # fails if another process was first: its key wins
    except FileExistsError:
        theirs = _read_key(path)
        if theirs:
            return theirs
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return key


def _read_key(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
