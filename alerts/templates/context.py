"""What a message may say: the audience, the language, the kind of message, its context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

DEFAULT_TZ: Final = "Asia/Shanghai"
Detail = Mapping[str, str | float | int | bool]


class Audience(StrEnum):
    """Who reads the message: what it may say and how it names people."""

    FAMILY = "family"  # emergency contacts: the polite name, a compact address
    WORKER = "worker"  # the grid worker (网格员): full name, full address, health notes
    SUPERVISOR = "supervisor"  # escalation: full name and address, no health notes
    DUTY = "duty"  # the duty centre: as the supervisor
    GROUP = "group"  # a group chat (WeCom group bot): masked names, no notes, no phones


class Lang(StrEnum):
    """The language of the message."""

    ZH = "zh"
    EN = "en"


class MessageKind(StrEnum):
    """What a message announces (not `protocol.models.Kind`, the kind of device)."""

    RAISED = "raised"
    REMINDER = "reminder"  # still not acknowledged
    ESCALATED = "escalated"  # to the next rung: supervisor, duty centre
    UPDATED = "updated"  # severity rose
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"  # cleared by the rule, or resolved by a person (`acked_by`)
    NOTICE = "notice"  # a supervisor's notice for an area


@dataclass(frozen=True, slots=True)
class MessageContext:
    """Everything one message may say; `at_ms` is the time of what it announces.

    That is the raise for RAISED, REMINDER, ESCALATED and UPDATED, the acknowledgement
    for ACKNOWLEDGED, the clearing (or the person's resolve) for RESOLVED.
    """

    rule: str
    severity: str  # "critical" | "warning" | "info"
    kind: MessageKind
    at_ms: int
    resident_name: str | None = None
    gender: str | None = None  # 男/女 or male/female
    birth_year: int | None = None
    community: str | None = None
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    device_id: str | None = None
    value: float | None = None
    limit: float | None = None
    detail: Detail = field(default_factory=dict)
    health_notes: str | None = None  # rendered for Audience.WORKER only
    worker_names: tuple[str, ...] = ()  # the grid workers notified as well
    acked_by: str | None = None  # ACKNOWLEDGED: who; RESOLVED: who resolved it (None: cleared)
    note: str | None = None  # the acknowledging or resolving person's note
    ack_url: str | None = None
    ack_code: str | None = None  # an SMS reply code
    step: int = 0  # the alert's rung on the ladder: not shown (reminders say `waited_min`)
    flapping: bool = False
    grouped_rules: tuple[str, ...] = ()  # other rules folded into this alert
    notice_title: str | None = None
    notice_text: str | None = None
    residents_to_check: tuple[str, ...] = ()  # never shown to FAMILY
    waited_min: int | None = None  # REMINDER, ESCALATED: minutes without acknowledgement
