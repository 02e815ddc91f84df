"""The alert decisions, table by table: plain values in, a decision out, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from alerts.decisions import (
    RUNGS,
    AfterFailure,
    Candidate,
    ChannelPlan,
    FailureOutcome,
    Opening,
    Policy,
    RaisePlan,
    Reopening,
    after_failure,
    channel_plan,
    clock_minutes,
    digest_day,
    due_at,
    group_primary,
    interval,
    next_step,
    on_reopen,
    open_or_reopen,
    raise_plan,
    severity_rose,
)
from core.settings import AlertsTuning

# The shipped defaults: critical rungs 5 min apart, warnings 30, reminders at most 2 h apart,
# quiet 22:00-07:00 Shanghai, group 30 min, flap 1 h / 3 times, 3 tries from 2 s, digest 08:00.
POLICY = Policy.of(AlertsTuning())
# 2026-06-01 10:00 in Shanghai: daytime.
NOON = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
NIGHT = datetime(2026, 6, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
MORNING = datetime(2026, 6, 1, 23, 0, tzinfo=UTC)  # 07:00 on 2 June in Shanghai
EVENING = datetime(2026, 6, 1, 13, 59, tzinfo=UTC)  # 21:59 in Shanghai


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def test_the_policy_reads_the_operators_settings() -> None:
    policy = Policy.of(AlertsTuning(quiet_hours="21:30-06:15", digest_at="07:45", flap_count=5))
    assert (policy.quiet_start, policy.quiet_end) == (21 * 60 + 30, 6 * 60 + 15)
    assert policy.digest_at == 7 * 60 + 45
    assert policy.flap_count == 5
    assert str(policy.zone) == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("text", "minute"), [("00:00", 0), ("07:00", 420), ("22:30", 1350), ("8", 480)]
)
def test_clock_minutes(text: str, minute: int) -> None:
    assert clock_minutes(text) == minute


@pytest.mark.parametrize(
    ("old", "new", "rose"),
    [
        ("info", "warning", True),
        ("warning", "critical", True),
        ("info", "critical", True),
        ("warning", "warning", False),
        ("critical", "warning", False),
        ("critical", "info", False),
    ],
)
def test_severity_only_rises(old: str, new: str, rose: bool) -> None:
    assert severity_rose(old, new) is rose


# -- open or reopen ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolved_ago", "flap_window", "opening"),
    [
        (None, 3600, Opening.OPEN),  # never closed by the system: a new alert
        (minutes(3), 3600, Opening.REOPEN),
        (minutes(60), 3600, Opening.REOPEN),  # the window's edge is inside
        (minutes(61), 3600, Opening.OPEN),
        (minutes(3), 0, Opening.OPEN),  # no window: never reopened
    ],
)
def test_open_or_reopen(
    resolved_ago: timedelta | None, flap_window: float, opening: Opening
) -> None:
    resolved_at = NOON - resolved_ago if resolved_ago is not None else None
    policy = replace(POLICY, flap_window=flap_window)
    assert open_or_reopen(resolved_at, NOON, policy) is opening


@pytest.mark.parametrize(
    ("reopened", "flapping", "flap_count", "decision"),
    [
        (1, False, 3, Reopening.NOTIFY),
        (2, False, 3, Reopening.NOTIFY),
        (3, False, 3, Reopening.START_FLAPPING),  # the third return marks it
        (4, True, 3, Reopening.QUIET),
        (1, False, 1, Reopening.START_FLAPPING),
        (1, True, 3, Reopening.QUIET),  # once flapping, always quiet
    ],
)
def test_a_reopened_alert_flaps_at_the_count(
    reopened: int, flapping: bool, flap_count: int, decision: Reopening
) -> None:
    assert on_reopen(reopened, flapping, replace(POLICY, flap_count=flap_count)) is decision


# -- grouping --------------------------------------------------------------------------------


def open_alert(id_: int, severity: str, ago_min: float) -> Candidate:
    return Candidate(id_, severity, NOON - minutes(ago_min))


@pytest.mark.parametrize(
    ("resident_id", "severity", "candidates", "window", "primary"),
    [
        (7, "warning", [], 1800, None),  # nothing open: its own incident
        (7, "warning", [open_alert(1, "critical", 5)], 1800, 1),  # a fall, then a warning
        (7, "warning", [open_alert(1, "warning", 5)], 1800, 1),  # as severe joins too
        (7, "critical", [open_alert(1, "warning", 5)], 1800, None),  # worse: speaks for itself
        (7, "warning", [open_alert(1, "critical", 31)], 1800, None),  # outside the window
        (7, "warning", [open_alert(1, "critical", 30)], 1800, 1),  # the window's edge is in
        (None, "warning", [open_alert(1, "critical", 5)], 1800, None),  # no resident, no group
        (7, "warning", [open_alert(1, "critical", 5)], 0, None),  # grouping switched off
        # the oldest that qualifies, whatever order the rows came in
        (
            7,
            "warning",
            [open_alert(3, "critical", 2), open_alert(2, "info", 20), open_alert(1, "warning", 10)],
            1800,
            1,
        ),
        # same opening time: the lower id first
        (7, "info", [open_alert(5, "warning", 5), open_alert(4, "warning", 5)], 1800, 4),
    ],
)
def test_group_primary(
    resident_id: int | None,
    severity: str,
    candidates: list[Candidate],
    window: float,
    primary: int | None,
) -> None:
    policy = replace(POLICY, group_window=window)
    assert group_primary(resident_id, severity, candidates, NOON, policy) == primary


# -- the ladder -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "step", "gap_min"),
    [
        ("critical", 0, 5),
        ("critical", 1, 5),
        ("critical", 2, 10),
        ("critical", 3, 20),
        ("critical", 5, 80),
        ("critical", 6, 120),  # capped at reminder_max
        ("critical", 20, 120),
        ("warning", 1, 30),
        ("warning", 2, 60),
        ("warning", 3, 120),
        ("warning", 4, 120),
        ("info", 1, 30),  # anything not critical climbs at the warning pace
    ],
)
def test_gaps_double_up_to_the_cap(severity: str, step: int, gap_min: float) -> None:
    assert interval(severity, step, POLICY) == minutes(gap_min)


@pytest.mark.parametrize(
    ("severity", "now", "due"),
    [
        ("critical", NIGHT, NIGHT),  # a fall is never held back
        ("warning", NOON, NOON),
        ("warning", NIGHT, datetime(2026, 6, 1, 23, 0, tzinfo=UTC)),  # 07:00 next morning
        ("warning", MORNING, MORNING),  # 07:00 itself: quiet hours are over
        ("warning", MORNING - minutes(1), MORNING),  # 06:59
        ("info", EVENING, EVENING),  # 21:59: not yet quiet
        ("info", EVENING + minutes(1), MORNING),  # 22:00 sharp: quiet
    ],
)
def test_quiet_hours_hold_all_but_critical(severity: str, now: datetime, due: datetime) -> None:
    assert due_at(severity, now, POLICY) == due


@pytest.mark.parametrize(
    ("start", "end", "now", "quiet"),
    [
        ("13:00", "14:00", datetime(2026, 6, 1, 5, 30, tzinfo=UTC), True),  # 13:30, same day
        ("13:00", "14:00", datetime(2026, 6, 1, 6, 0, tzinfo=UTC), False),  # 14:00
        ("13:00", "14:00", datetime(2026, 6, 1, 4, 59, tzinfo=UTC), False),  # 12:59
    ],
)
def test_quiet_hours_within_one_day(start: str, end: str, now: datetime, quiet: bool) -> None:
    policy = replace(POLICY, quiet_start=clock_minutes(start), quiet_end=clock_minutes(end))
    assert (due_at("warning", now, policy) != now) is quiet


@pytest.mark.parametrize(
    ("severity", "step", "now", "plan"),
    [
        ("info", 0, NOON, None),  # information waits for the digest
        ("critical", 0, NOON, RaisePlan(NOON, NOON + minutes(5))),
        ("critical", 2, NOON, RaisePlan(NOON, NOON + minutes(20))),  # a reopening, a step up
        ("warning", 0, NOON, RaisePlan(NOON, NOON + minutes(30))),
        ("warning", 0, NIGHT, RaisePlan(MORNING, MORNING + minutes(30))),
    ],
)
def test_raise_plan(severity: str, step: int, now: datetime, plan: RaisePlan | None) -> None:
    assert raise_plan(severity, step, now, POLICY) == plan


@pytest.mark.parametrize(
    ("step", "severity", "flapping", "now", "expect"),
    [
        # (new step, new rung, rungs reminded, due, next in min after due, event)
        (0, "critical", False, NOON, (1, 1, (0,), NOON, 10, "escalated")),
        (1, "critical", False, NOON, (2, 2, (0, 1), NOON, 20, "escalated")),
        (2, "critical", False, NOON, (3, None, (0, 1, 2), NOON, 40, "reminded")),
        (7, "critical", False, NOON, (8, None, (0, 1, 2), NOON, 120, "reminded")),
        (0, "critical", True, NOON, (1, 1, (), NOON, 10, "escalated")),  # flapping: no reminders
        (3, "critical", True, NOON, (4, None, (), NOON, 80, "reminded")),
        (0, "warning", False, NIGHT, (1, 1, (0,), MORNING, 60, "escalated")),  # held till 07:00
    ],
)
def test_next_step(
    step: int,
    severity: str,
    flapping: bool,
    now: datetime,
    expect: tuple[int, int | None, tuple[int, ...], datetime, float, str],
) -> None:
    opened = now - minutes(17)
    decided = next_step(step, severity, flapping, opened, now, POLICY)
    new_step, new_rung, reminded, due, next_min, event = expect
    assert (decided.step, decided.new_rung, decided.reminded) == (new_step, new_rung, reminded)
    assert (decided.due, decided.next_at - decided.due) == (due, minutes(next_min))
    assert (decided.event, decided.waited_min) == (event, 17)
    assert decided.new_rung is None or decided.new_rung < RUNGS


# -- the outbox and the dispatcher --------------------------------------------------------------

BOTH = (("sms", "13800138000"), ("wechat", "zhangxm"))


@pytest.mark.parametrize(
    ("severity", "reminder", "channels", "plan"),
    [
        ("critical", False, BOTH, ChannelPlan(BOTH, ())),  # every channel at once
        ("critical", True, BOTH, ChannelPlan(BOTH[:1], ("wechat:zhangxm",))),  # a reminder: one
        ("warning", False, BOTH, ChannelPlan(BOTH[:1], ("wechat:zhangxm",))),
        ("info", False, BOTH[1:], ChannelPlan(BOTH[1:], ())),
        ("warning", False, (), ChannelPlan((), ())),
    ],
)
def test_channel_plan(
    severity: str, reminder: bool, channels: tuple[tuple[str, str], ...], plan: ChannelPlan
) -> None:
    assert channel_plan(severity, reminder, channels) == plan


def secs(n: float) -> datetime:
    return NOON + timedelta(seconds=n)


@pytest.mark.parametrize(
    ("attempts", "recoverable", "wanted", "fallback", "decision"),
    [
        # a timeout or a 5xx: tried again with doubling backoff, then the next channel
        (1, True, True, True, AfterFailure(FailureOutcome.RETRY, secs(2))),
        (2, True, True, True, AfterFailure(FailureOutcome.RETRY, secs(4))),
        (3, True, True, True, AfterFailure(FailureOutcome.FALL_BACK)),
        (3, True, True, False, AfterFailure(FailureOutcome.GIVE_UP)),
        # a bad URL, a rejected number, a template error: the next channel at once
        (1, False, True, True, AfterFailure(FailureOutcome.FALL_BACK)),
        (1, False, True, False, AfterFailure(FailureOutcome.GIVE_UP)),
        # answered or resolved meanwhile: nothing more, whatever the failure
        (1, True, False, True, AfterFailure(FailureOutcome.CANCEL)),
        (3, False, False, True, AfterFailure(FailureOutcome.CANCEL)),
    ],
)
def test_retry_or_fall_back(
    attempts: int, recoverable: bool, wanted: bool, fallback: bool, decision: AfterFailure
) -> None:
    assert (
        after_failure(
            attempts=attempts,
            recoverable=recoverable,
            still_wanted=wanted,
            has_fallback=fallback,
            now=NOON,
            policy=POLICY,
        )
        == decision
    )


@pytest.mark.parametrize(
    ("retry_attempts", "attempts", "outcome"),
    [
        (1, 1, FailureOutcome.FALL_BACK),
        (5, 4, FailureOutcome.RETRY),
        (5, 5, FailureOutcome.FALL_BACK),
    ],
)
def test_the_retry_limit_is_the_operators(
    retry_attempts: int, attempts: int, outcome: FailureOutcome
) -> None:
    policy = replace(POLICY, retry_attempts=retry_attempts)
    decided = after_failure(
        attempts=attempts,
        recoverable=True,
        still_wanted=True,
        has_fallback=True,
        now=NOON,
        policy=policy,
    )
    assert decided.outcome is outcome


@pytest.mark.parametrize(
    ("now", "last_day", "day"),
    [
        (datetime(2026, 5, 31, 23, 59, tzinfo=UTC), None, None),  # 07:59 local: not yet
        (datetime(2026, 6, 1, 0, 0, tzinfo=UTC), None, "2026-06-01"),  # 08:00 local
        (datetime(2026, 6, 1, 0, 0, 30, tzinfo=UTC), None, "2026-06-01"),
        (datetime(2026, 6, 1, 3, 0, tzinfo=UTC), "2026-06-01", None),  # once a day
        (datetime(2026, 6, 1, 3, 0, tzinfo=UTC), "2026-05-31", "2026-06-01"),
        (datetime(2026, 6, 1, 15, 59, tzinfo=UTC), "2026-05-31", "2026-06-01"),  # 23:59 local
        (datetime(2026, 6, 1, 16, 0, tzinfo=UTC), "2026-06-01", None),  # 00:00 on 2 June
    ],
)
def test_digest_day(now: datetime, last_day: str | None, day: str | None) -> None:
    assert digest_day(now, last_day, POLICY) == day
