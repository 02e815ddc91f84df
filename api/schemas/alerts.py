"""Alerts: the list, one alert with its timeline and messages, the verbs, response times."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.common import ORMModel

StateFilter = Literal["open", "firing", "acknowledged", "resolved", "all"]
# The values of rules.findings.Severity, as a query parameter's choices.
SeverityName = Literal["info", "warning", "critical"]
# Blank text is no note: "what was done" must say something.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class AlertPublic(ORMModel):
    id: int
    rule: str
    severity: str
    state: str
    subject_kind: str
    subject: str
    device_id: str | None
    resident_id: int | None
    resident_name: str | None = Field(None, description="from the resident's file, if any")
    grid_id: int | None = Field(description="the alert's grid, else its resident's")
    building: str | None
    latched: bool
    flapping: bool
    reopened: int
    group_id: int | None = Field(description="the alert this one joined (one incident)")
    step: int = Field(description="escalation steps taken so far")
    next_step_at: datetime | None
    opened_at: datetime
    updated_at: datetime
    cleared_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution_note: str | None


class AlertEventPublic(ORMModel):
    id: int
    at: datetime
    kind: str = Field(examples=["raised", "notified", "acknowledged", "comment", "resolved"])
    actor: str | None
    channel: str | None
    recipient: str | None
    detail: dict[str, Any]


class NotificationPublic(ORMModel):
    """One message owed or sent; the target is masked (138****8000)."""

    id: int
    step: int
    kind: str
    recipient_name: str
    audience: str
    channel: str
    target: str
    state: str = Field(examples=["pending", "sending", "sent", "failed", "cancelled"])
    attempts: int
    due_at: datetime
    sent_at: datetime | None
    last_error: str | None


class AlertDetail(AlertPublic):
    finding: dict[str, Any]
    events: list[AlertEventPublic] = Field(description="the timeline, oldest first")
    notifications: list[NotificationPublic]


class ResolveRequest(BaseModel):
    note: Text = Field(examples=["已上门，老人无大碍，家属已到场"], description="what was done")


class CommentRequest(BaseModel):
    text: Text = Field(examples=["已电话联系儿子，十分钟后到"])


class ResponseTimes(BaseModel):
    """Response figures of one grid over one ISO week (or the whole range)."""

    grid_id: int | None
    grid_name: str | None
    week: str | None = Field(description="ISO week in local time, e.g. 2026-W05; null: the range")
    alerts: int = Field(description="incidents (warning and critical, grouped ones counted once)")
    acknowledged: int = Field(description="answered by a person: acknowledged, or resolved")
    resolved: int = Field(description="resolved by a person")
    auto_resolved: int = Field(description="closed by the system when the condition cleared")
    ack_median_min: float | None
    ack_p90_min: float | None
    resolve_median_min: float | None
    resolve_p90_min: float | None
    within_target: float | None = Field(
        description="share of the alerts that needed an answer answered within the target"
    )


class ResponseTimesReport(BaseModel):
    start: datetime
    end: datetime
    target_min: int
    timezone: str
    weeks: list[ResponseTimes] = Field(description="per grid and ISO week")
    totals: list[ResponseTimes] = Field(description="per grid over the whole range")
