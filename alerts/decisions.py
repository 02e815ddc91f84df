"""The alert decisions as pure functions of plain values, `now` passed in: no database, no I/O.

The lifecycle and the dispatcher read rows, ask these, and write what they answer
(docs/alerts.md, "Decisions").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from core.constants import SEVERITY_RANK
from core.settings import AlertsTuning

__all__ = [
    "RUNGS",
    "AfterFailure",
    "Candidate",
    "ChannelPlan",
    "FailureOutcome",
    "NextStep",
    "Opening",
    "Policy",
    "RaisePlan",
    "Reopening",
    "after_failure",
    "channel_plan",
    "digest_day",
    "due_at",
    "group_primary",
    "interval",
    "next_step",
    "on_reopen",
    "open_or_reopen",
    "raise_plan",
    "severity_rose",
]

RUNGS: Final = 3  # primary (family and grid workers), supervisor, duty centre


@dataclass(frozen=True, slots=True)
class Policy:
    """The tuning the decisions read, as plain values: `Policy.of(settings.alerts)`."""

    critical_escalate_after: float
    warning_escalate_after: float
    reminder_max: float
    quiet_start: int  # minutes after local midnight
    quiet_end: int
    zone: tzinfo
    group_window: float
    flap_window: float
    flap_count: int
    retry_attempts: int
    retry_backoff: float
    digest_at: int  # minutes after local midnight

    @classmethod
    def of(cls, tuning: AlertsTuning) -> Policy:
        """The policy of the operator's alert settings."""
        start, _, end = tuning.quiet_hours.partition("-")
        return cls(
            critical_escalate_after=tuning.critical_escalate_after,
            warning_escalate_after=tuning.warning_escalate_after,
            reminder_max=tuning.reminder_max,
            quiet_start=clock_minutes(start),
            quiet_end=clock_minutes(end),
            zone=ZoneInfo(tuning.timezone),
            group_window=tuning.group_window,
            flap_window=tuning.flap_window,
            flap_count=tuning.flap_count,
            retry_attempts=tuning.retry_attempts,
            retry_backoff=tuning.retry_backoff,
            digest_at=clock_minutes(tuning.digest_at),
        )


def clock_minutes(text: str) -> int:
    """`22:30` as minutes after midnight."""
    hours, _, minutes = text.strip().partition(":")
    return int(hours) * 60 + int(minutes or 0)


def severity_rose(old: str, new: str) -> bool:
    """Whether `new` is more severe than `old` (an alert's severity only ever moves up)."""
    return SEVERITY_RANK[new] > SEVERITY_RANK[old]


# -- opening ------------------------------------------------------------------------------


class Opening(StrEnum):
    """A finding with no open alert: a new alert, or the last one again."""

    OPEN = "open"  # a new alert
    REOPEN = "reopen"  # the same alert again: it cleared only a moment ago


def open_or_reopen(resolved_at: datetime | None, now: datetime, policy: Policy) -> Opening:
    """Reopen the subject's last alert for the rule if the system closed it within the flap window.

    `resolved_at`: when the system (not a person) last resolved a non-latched alert of
    the same subject and rule, None if it never did.
    """
    if resolved_at is None or policy.flap_window <= 0:
        return Opening.OPEN
    if resolved_at >= now - timedelta(seconds=policy.flap_window):
        return Opening.REOPEN
    return Opening.OPEN


class Reopening(StrEnum):
    """What a reopened alert owes its people."""

    NOTIFY = "notify"  # tell everyone again, one step up
    START_FLAPPING = "start_flapping"  # mark it flapping now; no message
    QUIET = "quiet"  # flapping already: no message for each return


def on_reopen(reopened: int, flapping: bool, policy: Policy) -> Reopening:
    """What a reopening owes; `reopened` counts this one. The ladder runs in every case."""
    if flapping:
        return Reopening.QUIET
    if reopened >= policy.flap_count:
        return Reopening.START_FLAPPING
    return Reopening.NOTIFY


@dataclass(frozen=True, slots=True)
class Candidate:
    """An open alert of the same resident that is no group's member."""

    id: int
    severity: str
    opened_at: datetime


def group_primary(
    resident_id: int | None,
    severity: str,
    candidates: Sequence[Candidate],
    now: datetime,
    policy: Policy,
) -> int | None:
    """The alert a new one joins: the resident's oldest open in the window, at least as severe."""
    if resident_id is None or policy.group_window <= 0:
        return None
    since = now - timedelta(seconds=policy.group_window)
    rank = SEVERITY_RANK[severity]
    for candidate in sorted(candidates, key=lambda c: (c.opened_at, c.id)):
        if candidate.opened_at >= since and SEVERITY_RANK[candidate.severity] >= rank:
            return candidate.id
    return None


# -- the ladder -----------------------------------------------------------------------------


def interval(severity: str, step: int, policy: Policy) -> timedelta:
    """The gap before `step`: base, 2 x base, 4 x base ... up to `reminder_max`."""
    base = (
        policy.critical_escalate_after if severity == "critical" else policy.warning_escalate_after
    )
    return timedelta(seconds=min(base * 2 ** max(step - 1, 0), policy.reminder_max))


def due_at(severity: str, now: datetime, policy: Policy) -> datetime:
    """When a message may go: now, or for non-critical alerts the end of quiet hours."""
    if severity == "critical":
        return now
    local = now.astimezone(policy.zone)
    minute = local.hour * 60 + local.minute
    start, end = policy.quiet_start, policy.quiet_end
    quiet = (start <= minute or minute < end) if start > end else (start <= minute < end)
    if not quiet:
        return now
    wake = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if wake <= local:
        wake += timedelta(days=1)
    return wake.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class RaisePlan:
    """Rung 0 is told at `due`; the next step comes at `next_at`."""

    due: datetime
    next_at: datetime


def raise_plan(severity: str, step: int, now: datetime, policy: Policy) -> RaisePlan | None:
    """When rung 0 hears of an alert raised at `step`; None: information waits for the digest."""
    if severity == "info":
        return None
    due = due_at(severity, now, policy)
    return RaisePlan(due, due + interval(severity, step + 1, policy))


@dataclass(frozen=True, slots=True)
class NextStep:
    """One step of a firing alert nobody answered."""

    step: int
    new_rung: int | None  # the rung first told at this step; None once every rung was
    reminded: tuple[int, ...]  # the rungs told before, reminded now
    due: datetime
    next_at: datetime
    waited_min: int
    event: str  # "escalated" or "reminded", for the timeline


def next_step(
    step: int,
    severity: str,
    flapping: bool,
    opened_at: datetime,
    now: datetime,
    policy: Policy,
) -> NextStep:
    """The step after `step`: a new rung while there is one, and reminders to those told."""
    step += 1
    new_rung = step if step < RUNGS else None
    # A flapping alert keeps its ladder (someone stays on the hook) but reminds nobody.
    reminded = () if flapping else tuple(range(min(step, RUNGS)))
    due = due_at(severity, now, policy)  # a warning's reminder waits for the morning too
    return NextStep(
        step=step,
        new_rung=new_rung,
        reminded=reminded,
        due=due,
        next_at=due + interval(severity, step + 1, policy),
        waited_min=int((now - opened_at).total_seconds() // 60),
        event="escalated" if new_rung is not None else "reminded",
    )


# -- the outbox and the dispatcher ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    """Channels to queue now (`channel`, `target`), and the rest to fall back on, in order."""

    now: tuple[tuple[str, str], ...]
    fallback: tuple[str, ...]  # "sms:13800138000"


def channel_plan(severity: str, reminder: bool, channels: Sequence[tuple[str, str]]) -> ChannelPlan:
    """Critical news goes on every channel of a person at once; the rest on the first."""
    if severity == "critical" and not reminder:
        return ChannelPlan(tuple(channels), ())
    return ChannelPlan(tuple(channels[:1]), tuple(f"{c}:{t}" for c, t in channels[1:]))


class FailureOutcome(StrEnum):
    """What becomes of a message whose delivery failed."""

    CANCEL = "cancel"  # nobody needs it any more: no retry, no fallback
    RETRY = "retry"  # the same channel again at `retry_at`
    FALL_BACK = "fall_back"  # the person's next channel, now
    GIVE_UP = "give_up"  # failed, and the person has no other channel


@dataclass(frozen=True, slots=True)
class AfterFailure:
    """The outcome of a failed delivery, and when to retry it."""

    outcome: FailureOutcome
    retry_at: datetime | None = None


def after_failure(
    *,
    attempts: int,
    recoverable: bool,
    still_wanted: bool,
    has_fallback: bool,
    now: datetime,
    policy: Policy,
) -> AfterFailure:
    """Retry a recoverable failure up to the limit, with doubling backoff; else fall back."""
    if not still_wanted:
        return AfterFailure(FailureOutcome.CANCEL)
    if recoverable and attempts < policy.retry_attempts:
        backoff = policy.retry_backoff * 2 ** (attempts - 1)
        return AfterFailure(FailureOutcome.RETRY, now + timedelta(seconds=backoff))
    if has_fallback:
        return AfterFailure(FailureOutcome.FALL_BACK)
    return AfterFailure(FailureOutcome.GIVE_UP)


def digest_day(now: datetime, last_day: str | None, policy: Policy) -> str | None:
    """The local day whose digest is due now (once a day, from `digest_at`), None if none is."""
    local = now.astimezone(policy.zone)
    day = local.date().isoformat()
    if local.hour * 60 + local.minute < policy.digest_at or last_day == day:
        return None
    return day
