"""The alert side reads the rule journal: every finding applied once, whatever stops it."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from alerts.feed import FindingFeed
from alerts.tables import RESOLVED, Alert, AlertEvent
from core.journal import Journal
from rules.findings import Finding, Severity
from rules.journal import Entry, encode_entry
from tests.integration.test_alert_lifecycle import World


class Killed(BaseException):
    """The process died here (not an Exception: nothing in the feed may catch it)."""


def entries(world: World) -> list[Entry]:
    """Three steps of the engine: a condition opens, a fall, the condition clears."""
    ms = int(world.clock.now.timestamp() * 1000)
    return [
        Entry(ms, findings=[world.finding("hr_high", severity=Severity.WARNING)]),
        Entry(ms + 1, tick=True),  # a step without findings
        Entry(ms + 2, findings=[world.finding("fall", latched=True)]),
        Entry(ms + 3, findings=[world.finding("hr_high", active=False, severity=Severity.WARNING)]),
    ]


async def drain(feed: FindingFeed) -> None:
    done = asyncio.Event()
    done.set()  # stop once the journal is applied
    await feed.run(done)


def test_a_crash_between_journal_and_alert_book_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        world = World(tmp_path)
        await world.setup()
        journal = Journal(tmp_path / "journal")
        await journal.append([encode_entry(e) for e in entries(world)])

        first = FindingFeed(journal, world.service, max_findings=1)
        publish = world.service.publish
        calls = 0

        async def dies_on_the_second(findings: list[Finding], **kw: object) -> None:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise Killed  # before the second transaction commits
            await publish(findings, **kw)  # type: ignore[arg-type]

        world.service.publish = dies_on_the_second  # type: ignore[method-assign]
        with pytest.raises(Killed):
            await drain(first)
        assert await world.service.cursor("alerts") == 1

        restarted = world.new_service()  # a new process over the same database
        await drain(FindingFeed(journal, restarted, max_findings=1))
        assert await restarted.cursor("alerts") == 4

        async with world.database.sessions() as session:
            alerts = {a.rule: a for a in await session.scalars(select(Alert))}
            kinds = Counter((e.alert_id, e.kind) for e in await session.scalars(select(AlertEvent)))
        assert set(alerts) == {"hr_high", "fall"}  # one alert each, none twice
        assert alerts["hr_high"].state == RESOLVED
        for alert in alerts.values():
            assert all(n == 1 for (alert_id, _), n in kinds.items() if alert_id == alert.id)
        world.receiver.stop()

    asyncio.run(run())


def test_applied_segments_are_trimmed(tmp_path: Path) -> None:
    async def run() -> None:
        world = World(tmp_path)
        await world.setup()
        journal = Journal(tmp_path / "journal", max_bytes=300)
        journal.register("rules", 10**9)  # the rules checkpointed everything
        for entry in entries(world) * 5:
            await journal.append([encode_entry(entry)])
        assert len(journal.segments()) > 3
        feed = FindingFeed(journal, world.service)
        await drain(feed)
        assert len(journal.segments()) == 1  # only the segment being written stays
        assert feed.metrics.depth == 0
        assert "carewatch_alerts_feed_journal_depth 0" in feed.render_prometheus()
        world.receiver.stop()

    asyncio.run(run())


def test_a_failing_database_is_retried_and_applies_everything_once(tmp_path: Path) -> None:
    async def run() -> None:
        world = World(tmp_path)
        await world.setup()
        journal = Journal(tmp_path / "journal")
        await journal.append([encode_entry(e) for e in entries(world)])
        publish = world.service.publish
        failures = 2

        async def locked_at_first(findings: list[Finding], **kw: object) -> None:
            nonlocal failures
            if failures:
                failures -= 1
                raise OperationalError("UPDATE alerts", {}, Exception("database is locked"))
            await publish(findings, **kw)  # type: ignore[arg-type]

        world.service.publish = locked_at_first  # type: ignore[method-assign]
        feed = FindingFeed(journal, world.service, max_findings=1)
        await drain(feed)
        assert feed.metrics.failures == 2
        assert await world.service.cursor("alerts") == 4
        async with world.database.sessions() as session:
            rules = sorted(a.rule for a in await session.scalars(select(Alert)))
        assert rules == ["fall", "hr_high"]
        world.receiver.stop()

    asyncio.run(run())


def test_a_new_journal_behind_the_stored_cursor_is_applied_from_its_start(
    tmp_path: Path,
) -> None:
    """A worker's state folder lost, or its partition taken by another: the cursor is stale."""

    async def run() -> None:
        world = World(tmp_path)
        await world.setup()
        old = Journal(tmp_path / "old")
        first = Entry(1, findings=[world.finding("battery_low", severity=Severity.WARNING)])
        await old.append([encode_entry(first)] + [encode_entry(Entry(2, tick=True))] * 9)
        await drain(FindingFeed(old, world.service))
        assert await world.service.cursor("alerts") == 10

        new = Journal(tmp_path / "new")
        await new.append([encode_entry(e) for e in entries(world)])
        await drain(FindingFeed(new, world.service))
        async with world.database.sessions() as session:
            rules = {a.rule for a in await session.scalars(select(Alert))}
        assert rules == {"battery_low", "hr_high", "fall"}
        assert await world.service.cursor("alerts") == 4
        world.receiver.stop()

    asyncio.run(run())
