"""Per-device MQTT passwords derived from one secret, and Mosquitto password files."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from simulators.exceptions import CredentialsError

MOSQUITTO_PASSWD = "mosquitto_passwd"


def derive_password(secret: str, device_id: str) -> str:
    """A device's password: HMAC-SHA256(secret, device_id) in hex, first 32 characters."""
    return hmac.new(secret.encode(), device_id.encode(), hashlib.sha256).hexdigest()[:32]


def write_passwd_file(path: Path | str, entries: Iterable[tuple[str, str]]) -> int:
    """Write `user:password` lines, then hash them in place with `mosquitto_passwd -U`.

    Returns the number of users. The plaintext exists only until the hashing ends.
    """
    path = Path(path)
    lines: list[str] = []
    for user, password in entries:
        if not user or ":" in user or "\n" in user or "\n" in password:
            msg = f"cannot write user {user!r}: names need no ':' or newline, passwords no newline"
            raise CredentialsError(msg)
        lines.append(f"{user}:{password}\n")
    tool = shutil.which(MOSQUITTO_PASSWD)
    if tool is None:
        msg = (
            f"{MOSQUITTO_PASSWD} not found on PATH: install the mosquitto package "
            "(Debian: apt-get install mosquitto) to hash the password file"
        )
        raise CredentialsError(msg)
    # Owner-only from the start: the file briefly holds plaintext passwords.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.writelines(lines)
    try:
        result = subprocess.run(
            [tool, "-U", str(path)], capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        path.unlink(missing_ok=True)
        msg = f"{tool} -U {path} failed: {exc}"
        raise CredentialsError(msg) from exc
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        detail = (result.stderr or result.stdout).strip()[:500]
        msg = f"{tool} -U {path} exited with {result.returncode}: {detail}"
        raise CredentialsError(msg)
    return len(lines)
