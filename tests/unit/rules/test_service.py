"""RuleService: the engine's life in the ingest process (checkpoints, reloads, sinks)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from core.journal import Journal
from core.settings import Settings
from protocol.models import Kind, Reading, WristbandEvent, WristbandTelemetry
from rules.findings import Finding, FindingLog, read_findings
from rules.journal import decode_entry, items_of
from rules.service import RuleService

T0 = 1_780_279_200_000  # 2026-06-01 10:00 Asia/Shanghai


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class ListSink:
    def __init__(self, fail: int = 0) -> None:
        self.findings: list[Finding] = []
        self.fail = fail

    async def publish(self, findings: list[Finding]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("the alert store is down")
        self.findings.extend(findings)


def settings(tmp_path: Path, rules_file: Path | None = None) -> Settings:
    return Settings(state_dir=tmp_path / "state", rules={"file": rules_file})


def hr(device: str, ts: int, value: float) -> Reading:
    return Reading(device, Kind.WRISTBAND, WristbandTelemetry(ts=ts, hr=value, worn=True))


def fall(device: str, ts: int) -> Reading:
    return Reading(device, Kind.WRISTBAND, WristbandEvent(ts=ts, type="fall", confidence=0.9))


async def judge(service: RuleService, item: Reading) -> None:
    """What the ingester does with a chunk of one reading: handle it, then settle."""
    await service.handle(item)
    await service.settle()


def opened(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule and f.active]


def test_a_sustained_clock_and_a_latched_fall_survive_a_restart(tmp_path: Path) -> None:
    async def run() -> None:
        clock = Clock()
        sink = ListSink()
        first = RuleService(settings(tmp_path), [sink], clock=clock)
        await first.start()
        await judge(first, fall("w1", T0))
        for minute in range(3):  # 3 of the 5 minutes hr_high needs
            clock.now = T0 + minute * 60_000
            await judge(first, hr("w1", clock.now, 140))
        first.checkpoint()

        clock.now += 60_000
        second = RuleService(settings(tmp_path), [sink], clock=clock)
        await second.start()
        for minute in range(3, 6):
            clock.now = T0 + minute * 60_000
            await judge(second, hr("w1", clock.now, 140))
        # Restarting did not restart the clock: five minutes after the first high reading.
        (finding,) = opened(sink.findings, "hr_high")
        assert finding.since == T0
        # The fall is still latched: the same event again is a redelivery, not a new fall.
        await judge(second, fall("w1", T0))
        assert len(opened(sink.findings, "fall")) == 1
        assert await second.resolve("w1", "fall")
        assert [f.active for f in sink.findings if f.rule == "fall"] == [True, False]

    asyncio.run(run())


def test_an_unreadable_checkpoint_is_kept_aside_and_the_service_starts_fresh(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        service = RuleService(settings(tmp_path), [ListSink()], clock=Clock())
        service.checkpoint_path.parent.mkdir(parents=True)
        service.checkpoint_path.write_bytes(b"\x00not msgpack")
        await service.start()
        assert not service.checkpoint_path.exists()
        assert service.checkpoint_path.with_suffix(".bad").exists()
        assert service.engine.wristbands == {}

    asyncio.run(run())


def test_a_bad_rules_file_stops_the_start_with_the_key_named(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[threshold.hr_high]\nfor = "five minutes"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"threshold\.hr_high\.for"):
        RuleService(settings(tmp_path, path), [ListSink()])


def test_reload_applies_a_good_file_and_keeps_the_rules_on_a_bad_one(tmp_path: Path) -> None:
    async def run() -> None:
        path = tmp_path / "rules.toml"
        path.write_text("[threshold.hr_high]\nabove = 130\nclear_at = 120\n", encoding="utf-8")
        clock = Clock()
        sink = ListSink()
        service = RuleService(settings(tmp_path, path), [sink], clock=clock)
        await service.start()
        assert service.rules.default.thresholds[0].limit == 130
        await judge(service, hr("w1", T0, 140))  # a pending run, kept across reloads

        path.write_text("[threshold.hr_high]\nabove = 125\nclear_at = 115\n", encoding="utf-8")
        os.utime(path, (1, 1))
        assert service.reload_if_changed()
        assert service.rules.default.thresholds[0].limit == 125

        path.write_text("[threshold.hr_high]\nabove = 'high'\n", encoding="utf-8")
        os.utime(path, (2, 2))
        assert not service.reload_if_changed()
        assert service.rules.default.thresholds[0].limit == 125

        clock.now = T0 + 300_000
        await judge(service, hr("w1", clock.now, 140))
        (finding,) = opened(sink.findings, "hr_high")
        assert finding.since == T0 and finding.limit == 125

    asyncio.run(run())


def test_a_failing_sink_holds_the_reading_until_it_takes_the_finding(tmp_path: Path) -> None:
    async def run() -> None:
        sink = ListSink(fail=2)
        service = RuleService(settings(tmp_path), [sink], clock=Clock())
        await service.start()
        await asyncio.wait_for(judge(service, fall("w1", T0)), 5)
        assert service.sink_errors == 2
        assert [f.rule for f in sink.findings] == ["fall"]

    asyncio.run(run())


def test_the_finding_log_is_json_lines_read_back_whole(tmp_path: Path) -> None:
    async def run() -> None:
        log = FindingLog(tmp_path / "findings.jsonl")
        service = RuleService(settings(tmp_path), [log], clock=Clock())
        await judge(service, fall("w1", T0))
        (finding,) = read_findings(tmp_path / "findings.jsonl")
        assert (finding.rule, finding.subject, finding.latched) == ("fall", "w1", True)

    asyncio.run(run())


METRICS = """\
# HELP carewatch_rules_readings_total Readings judged.
# TYPE carewatch_rules_readings_total counter
carewatch_rules_readings_total 4
# HELP carewatch_rules_late_total Readings older than the lateness tolerance.
# TYPE carewatch_rules_late_total counter
carewatch_rules_late_total 1
# HELP carewatch_rules_duplicates_total Repeated events dropped.
# TYPE carewatch_rules_duplicates_total counter
carewatch_rules_duplicates_total 1
# HELP carewatch_rules_inhibited_total Readings whose vitals were not judged.
# TYPE carewatch_rules_inhibited_total counter
carewatch_rules_inhibited_total 0
# HELP carewatch_rules_sink_errors_total Failed attempts to hand findings on.
# TYPE carewatch_rules_sink_errors_total counter
carewatch_rules_sink_errors_total 0
# HELP carewatch_rules_devices Devices with rule state in this worker.
# TYPE carewatch_rules_devices gauge
carewatch_rules_devices 1
# HELP carewatch_rules_findings_total Findings produced, by rule.
# TYPE carewatch_rules_findings_total counter
carewatch_rules_findings_total{rule="fall"} 1
"""


def test_metrics_in_the_prometheus_text_format(tmp_path: Path) -> None:
    async def run() -> None:
        service = RuleService(settings(tmp_path), [ListSink()], clock=Clock())
        await judge(service, fall("w1", T0))
        await judge(service, fall("w1", T0))  # a redelivery
        await judge(service, hr("w1", T0, 70))
        await judge(service, hr("w1", T0 - 3_600_000, 70))  # older than the tolerance
        assert service.render_prometheus() == METRICS

    asyncio.run(run())


def journaled(tmp_path: Path, clock: Clock, sink: ListSink) -> tuple[RuleService, Journal]:
    journal = Journal(tmp_path / "state" / "journal")
    return RuleService(settings(tmp_path), [sink], clock=clock, journal=journal), journal


async def crash_mid_tachycardia(tmp_path: Path, *, with_journal: bool) -> list[Finding]:
    """Normal at minute 0 (checkpointed), high from minute 1; killed after minute 2."""
    clock, sink = Clock(), ListSink()

    def service() -> RuleService:
        if with_journal:
            return journaled(tmp_path, clock, sink)[0]
        return RuleService(settings(tmp_path), [sink], clock=clock)

    first = service()
    await first.start()
    await judge(first, hr("w1", T0, 80))
    await first.save()
    for minute in (1, 2):  # in the journal only, then SIGKILL: no checkpoint at stop
        clock.now = T0 + minute * 60_000
        await judge(first, hr("w1", clock.now, 140))
    if first.journal is not None:
        first.journal.close()
    clock.now = T0 + 3 * 60_000
    second = service()
    await second.start()
    assert second.replayed == (2 if with_journal else 0)
    for minute in range(3, 9):
        clock.now = T0 + minute * 60_000
        await judge(second, hr("w1", clock.now, 140))
    return opened(sink.findings, "hr_high")


def test_a_crash_after_the_checkpoint_loses_no_rule_state(tmp_path: Path) -> None:
    """SIGKILL in the middle of a sustained condition: the journal brings its clock back."""
    (finding,) = asyncio.run(crash_mid_tachycardia(tmp_path, with_journal=True))
    # Five minutes after the first high reading, once: not lost, not doubled, not late.
    assert finding.since == T0 + 60_000
    assert finding.ts == T0 + 6 * 60_000


def test_without_the_journal_the_same_crash_restarts_the_clock(tmp_path: Path) -> None:
    """The baseline the journal fixes: what was judged since the checkpoint is gone."""
    (finding,) = asyncio.run(crash_mid_tachycardia(tmp_path, with_journal=False))
    assert finding.since == T0 + 3 * 60_000  # two minutes late
    assert finding.ts == T0 + 8 * 60_000


def test_journal_entries_hold_the_steps_in_order_with_their_findings(tmp_path: Path) -> None:
    async def run() -> None:
        clock, sink = Clock(), ListSink()
        service, journal = journaled(tmp_path, clock, sink)
        await service.start()
        await service.handle(hr("w1", T0, 80))
        await service.handle(fall("w1", T0 + 1))
        await service.settle()
        clock.now += 1000
        await service.tick()
        await service.resolve("w1", "fall")
        entries = [decode_entry(p) for _, p in journal.read_from(1)]
        assert [(bool(e.order), e.tick, e.resolve) for e in entries] == [
            (True, False, None),
            (False, True, None),
            (False, False, ("w1", "fall")),
        ]
        assert [i.device_id for i in items_of(entries[0])] == ["w1", "w1"]
        assert [f.rule for f in entries[0].findings] == ["fall"]
        assert [(f.rule, f.active) for f in entries[2].findings] == [("fall", False)]
        # The sinks got exactly what was journaled.
        assert sink.findings == [f for e in entries for f in e.findings]

    asyncio.run(run())


def test_no_segment_is_trimmed_before_the_rules_have_read_their_checkpoint(tmp_path: Path) -> None:
    """The alert side may be far ahead; what the rules will replay must stay."""
    journal = Journal(tmp_path / "state" / "journal", max_bytes=100)
    for _ in range(20):
        journal.append_sync([b"x" * 50])
    RuleService(settings(tmp_path), [ListSink()], clock=Clock(), journal=journal)
    journal.register("alerts")
    journal.mark("alerts", 20)  # the alert feed read everything, and starts first
    assert journal.segments()[0] == 1
