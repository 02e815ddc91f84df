"""The alert side of the rule journal: findings applied in batches, exactly once, on their own loop.

Ingest acknowledges readings once their findings are journaled; this loop turns them
into alerts at its own pace, so a busy alert database never slows ingest
(docs/alerts.md, "From the journal").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from alerts.service import AlertService
from core.constants import SEVERITY_RANK
from core.journal import Journal
from core.metrics import Metric, render_prometheus
from rules.findings import Finding
from rules.journal import decode_entry

log = logging.getLogger(__name__)

READER = "alerts"
_MAX_FINDINGS = 100  # per transaction: a fall in a burst waits for at most this many
_MAX_ENTRIES = 256  # read from the journal at once
_WARN_LAG_S = 30.0
_RETRY_FIRST, _RETRY_MAX = 0.5, 30.0  # seconds between attempts while the database fails


@dataclass(slots=True)
class FeedMetrics:
    """How far behind the journal the alert side is."""

    applied_lsn: int = 0
    journal_lsn: int = 0
    lag_seconds: float = 0.0
    transactions: int = 0
    findings: int = 0
    failures: int = 0

    @property
    def depth(self) -> int:
        """Journal entries written but not yet applied."""
        return max(0, self.journal_lsn - self.applied_lsn)


class FindingFeed:
    """Reads findings from the rule journal and hands them to the alert book."""

    def __init__(
        self,
        journal: Journal,
        alerts: AlertService,
        *,
        reader: str = READER,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        idle_wait: float = 0.2,
        max_findings: int = _MAX_FINDINGS,
    ) -> None:
        self.journal = journal
        self.alerts = alerts
        self.reader = reader
        self.wall_ms = wall_ms
        self.idle_wait = idle_wait
        self.max_findings = max_findings
        self.metrics = FeedMetrics()
        self._warned_at = 0.0
        self._delay = _RETRY_FIRST
        # Registered now, before the rules can checkpoint and trim: until `run` has read
        # the stored cursor, every segment stays.
        journal.register(reader)

    async def run(self, stop: asyncio.Event) -> None:
        """Apply what the journal holds and follows, until `stop` (then what is already there)."""
        start = await self.alerts.cursor(self.reader)
        end = self.journal.next_lsn - 1
        if start > end:
            # The stored position is past this journal's end: another journal (the worker's
            # state folder was lost, or another worker took its partition). All of it is new.
            log.warning(
                "alert cursor %s is at %d but this journal ends at %d: a new journal; "
                "applying it from its start",
                self.reader,
                start,
                end,
            )
            start = 0
        self.metrics.applied_lsn = start
        self.journal.mark(self.reader, start)
        reader = self.journal.reader(start + 1)
        while True:
            records = reader.read(limit=_MAX_ENTRIES)
            self.metrics.journal_lsn = self.journal.next_lsn - 1
            if records:
                if not await self._try_apply(records):
                    # Nothing after the stored cursor counts as applied: read from there.
                    reader = self.journal.reader(self.metrics.applied_lsn + 1)
                continue
            if stop.is_set():
                return
            self.journal.appended.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.journal.appended.wait(), self.idle_wait)

    async def _try_apply(self, records: list[tuple[int, bytes]]) -> bool:
        """Apply; if the database fails (down, locked), log, wait and return False."""
        try:
            await self._apply(records)
        except Exception:
            self.metrics.failures += 1
            log.exception("could not apply findings to the alerts; retrying in %.1f s", self._delay)
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, _RETRY_MAX)
            return False
        self._delay = _RETRY_FIRST
        return True

    async def _apply(self, records: list[tuple[int, bytes]]) -> None:
        """One transaction per group of entries, the cursor stored with it."""
        group: list[Finding] = []
        last_at = 0
        for lsn, payload in records:
            entry = decode_entry(payload)
            group.extend(entry.findings)
            last_at = entry.at
            if len(group) >= self.max_findings:
                await self._commit(group, lsn, last_at)
                group = []
        last = records[-1][0]
        if group or last > self.metrics.applied_lsn:
            await self._commit(group, last, last_at)

    async def _commit(self, findings: list[Finding], lsn: int, at: int) -> None:
        if findings:
            await self.alerts.publish(by_priority(findings), cursor=(self.reader, lsn))
            self.metrics.transactions += 1
            self.metrics.findings += len(findings)
        # With no findings the stored cursor may lag: replaying finding-free entries is free.
        self.metrics.applied_lsn = lsn
        self.journal.mark(self.reader, lsn)
        self._watch_lag(at)

    def render_prometheus(self) -> str:
        """Journal depth and alert-side lag (`carewatch_alerts_feed_*`)."""
        m = self.metrics
        return render_prometheus(
            "carewatch_alerts_feed_",
            [
                Metric("journal_depth", "gauge", "Journal entries not yet applied.", m.depth),
                Metric("lag_seconds", "gauge", "Age of the last entry applied.", m.lag_seconds),
                Metric("applied_lsn", "gauge", "Last journal entry applied.", m.applied_lsn),
                Metric("findings_total", "counter", "Findings applied.", m.findings),
                Metric("transactions_total", "counter", "Alert transactions.", m.transactions),
                Metric("failures_total", "counter", "Batches the database refused.", m.failures),
            ],
        )

    def _watch_lag(self, at: int) -> None:
        lag = max(0.0, (self.wall_ms() - at) / 1000)
        self.metrics.lag_seconds = lag
        now = time.monotonic()
        if lag > _WARN_LAG_S and now - self._warned_at > _WARN_LAG_S:
            self._warned_at = now
            log.warning(
                "alerts are %.0f s behind the rule journal (%d entries waiting): "
                "the alert database is slow or down",
                lag,
                self.metrics.depth,
            )


def by_priority(findings: Iterable[Finding]) -> list[Finding]:
    """Critical subjects first, each subject's findings in their own order.

    A fall in the middle of a burst of low-battery findings becomes an alert (and a
    message) first; reordering only whole subjects keeps each one's open-then-clear.
    """
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault(finding.key, []).append(finding)
    ranked = sorted(
        groups.values(),
        key=lambda group: -max(SEVERITY_RANK[f.severity.value] for f in group),
    )
    return [finding for group in ranked for finding in group]
