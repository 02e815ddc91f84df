"""What the engine reports: a finding opens ("this condition holds for this subject") or clears.

The alert dispatcher turns findings into alerts; a finding is keyed by
(`subject`, `rule`), so re-sending one (after a restart, say) is harmless.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import msgspec

log = logging.getLogger(__name__)


class Severity(StrEnum):
    INFO = "info"  # the daily digest
    WARNING = "warning"  # someone should look today
    CRITICAL = "critical"  # someone must act now


class SubjectKind(StrEnum):
    WRISTBAND = "wristband"  # a resident, through the band they wear
    BIN = "bin"
    BUILDING = "building"  # sorting accuracy is a building's figure


class Finding(msgspec.Struct, frozen=True, omit_defaults=True):
    """One rule's verdict on one subject, at event time `ts` (ms since the epoch, UTC).

    `active` findings open or update a condition (an update may raise `severity`);
    inactive ones clear it. `latched` findings (falls, SOS) only clear when a
    person resolves them (`RuleEngine.resolve`). `since` is when the condition
    began, `value` the reading that decided, `limit` the threshold it crossed.
    """

    rule: str
    subject_kind: SubjectKind
    subject: str
    active: bool
    severity: Severity
    ts: int
    since: int
    device_id: str | None = None
    resident_id: int | None = None
    grid_id: int | None = None
    building: str | None = None
    value: float | None = None
    limit: float | None = None
    latched: bool = False
    detail: dict[str, str | float | int | bool] = {}

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.rule)


class FindingSink(Protocol):
    """Where findings go: the alert dispatcher, a log, a test's list."""

    async def publish(self, findings: list[Finding]) -> None: ...


class FindingLog:
    """Findings appended as JSON lines, rotated at `max_bytes` (one `.1` kept): for operators."""

    def __init__(self, path: Path, max_bytes: int = 20_000_000) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._encode = msgspec.json.Encoder().encode

    async def publish(self, findings: list[Finding]) -> None:
        with self.path.open("ab") as handle:
            for finding in findings:
                handle.write(self._encode(finding) + b"\n")
            size = handle.tell()
        if size >= self.max_bytes:
            self.path.replace(self.path.with_suffix(self.path.suffix + ".1"))
        for finding in findings:
            log.info(
                "finding %s %s %s %s",
                finding.rule,
                "opened" if finding.active else "cleared",
                finding.subject,
                finding.severity,
            )


def read_findings(path: Path) -> list[Finding]:
    """Every finding in a `FindingLog` file, oldest first (tests and tools)."""
    decoder = msgspec.json.Decoder(Finding)
    if not path.exists():
        return []
    return [decoder.decode(line) for line in path.read_bytes().splitlines() if line]
