"""What every admin action shares: the admin's scope, exit codes, refusals, printing."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Final, TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from devices.access import Role, Scope

__all__ = [
    "ADMIN_SCOPE",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "EXIT_UNUSABLE",
    "Refused",
    "SessionFactory",
    "safe_url",
    "say",
]

ADMIN_SCOPE: Final = Scope(user_id=0, role=Role.ADMIN, community_id=None, grid_ids=frozenset())
EXIT_OK: Final = 0
EXIT_SKIPPED: Final = 1
EXIT_UNUSABLE: Final = 2

SessionFactory = Callable[[], AsyncSession]


class Refused(Exception):
    """The action cannot go on; `code` is the exit code."""

    def __init__(self, message: str, message_en: str, code: int = EXIT_SKIPPED) -> None:
        super().__init__(message_en)
        self.message = message
        self.message_en = message_en
        self.code = code


def say(text: str, stream: TextIO | None = None) -> None:
    """Print a line at once (standard output unless told)."""
    print(text, file=stream or sys.stdout, flush=True)


def safe_url(url: str) -> str:
    """The database URL without its password."""
    return make_url(url).render_as_string(hide_password=True)
