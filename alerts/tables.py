"""Alert tables: the alert itself, its timeline, and the outbox of notifications.

Written in the transaction of the finding that caused them (docs/alerts.md, "No loss, no repeats").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, server_now

# Alert states (the lifecycle of alerts/lifecycle.py).
FIRING = "firing"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"


class Alert(Base):
    """One condition of one subject (a band, a bin, a building), from raised to resolved."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alert_open_grid", "state", "grid_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # "<subject>|<rule>" while the alert is not resolved, NULL after: one open alert per key.
    open_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    rule: Mapped[str] = mapped_column(String(40))
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(100), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64))
    resident_id: Mapped[int | None] = mapped_column(
        ForeignKey("residents.id", ondelete="SET NULL"), index=True
    )
    grid_id: Mapped[int | None] = mapped_column(Integer, index=True)
    building: Mapped[str | None] = mapped_column(String(100))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=FIRING)
    latched: Mapped[bool] = mapped_column(Boolean, default=False)
    flapping: Mapped[bool] = mapped_column(Boolean, default=False)
    reopened: Mapped[int] = mapped_column(Integer, default=0)
    # The alert this one was folded into (one incident across several rules).
    group_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))
    finding: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    step: Mapped[int] = mapped_column(Integer, default=0)
    next_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acked_by: Mapped[str | None] = mapped_column(String(100))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    resolution_note: Mapped[str | None] = mapped_column(Text)


class AlertEvent(Base):
    """One line of an alert's timeline: raised, notified whom by what with what result, acked..."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Notification(Base):
    """A message owed to one person on one channel for one step of an alert (the outbox)."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("alert_id", "step", "recipient_key", "channel"),
        Index("ix_notification_due", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL for messages that belong to no alert (daily digests, area notices); those are
    # kept unique by `dedupe_key` instead.
    alert_id: Mapped[int | None] = mapped_column(
        ForeignKey("alerts.id", ondelete="CASCADE"), index=True
    )
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    step: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # raised, reminder, escalated, ...
    recipient_key: Mapped[str] = mapped_column(String(64))  # contact:12, user:5, duty:3
    recipient_name: Mapped[str] = mapped_column(String(100))
    audience: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))  # sms, wechat
    target: Mapped[str] = mapped_column(String(200))  # a phone number, a WeChat target or URL
    # The other channels of this person, in order: where a failing channel falls back.
    fallback: Mapped[list[str]] = mapped_column(JSON, default=list)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=server_now())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AreaNotice(Base):
    """A supervisor's notice for an area (a rainstorm warning), tracked per resident."""

    __tablename__ = "area_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    # What it covers: {"grid_ids": [...], "building_ids": [...], "tags": [...]}.
    area: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NoticeCheck(Base):
    """One resident a notice asks about, until someone confirms they are safe."""

    __tablename__ = "notice_checks"
    __table_args__ = (UniqueConstraint("notice_id", "resident_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(
        ForeignKey("area_notices.id", ondelete="CASCADE"), index=True
    )
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"))
    grid_id: Mapped[int] = mapped_column(Integer, index=True)
    safe_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_by: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)


class JournalCursor(Base):
    """How far a reader of the rule journal got: updated in the transaction it applied."""

    __tablename__ = "journal_cursors"

    reader: Mapped[str] = mapped_column(String(64), primary_key=True)
    lsn: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
