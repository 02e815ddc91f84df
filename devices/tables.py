"""The registry tables (SQLAlchemy 2): who lives where, who answers for them, whose device is whose.

One resident, one file (一人一档); bindings keep their history. See docs/registry.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime
from core.db import server_now as _now


class Community(Base):
    """A residential community (社区) with its duty centre, the last rung of escalation."""

    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    duty_phone: Mapped[str | None] = mapped_column(String(32))
    duty_wechat: Mapped[str | None] = mapped_column(String(200))

    grids: Mapped[list[Grid]] = relationship(back_populates="community")


grid_workers = Table(
    "grid_workers",
    Base.metadata,
    Column("grid_id", ForeignKey("grids.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)


class Grid(Base):
    """A grid (网格): a few buildings, their residents, its workers and one supervisor."""

    __tablename__ = "grids"
    __table_args__ = (UniqueConstraint("community_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    supervisor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    community: Mapped[Community] = relationship(back_populates="grids")
    workers: Mapped[list[User]] = relationship(secondary=grid_workers, lazy="selectin")


class User(Base):
    """A person who logs in: admin, supervisor (of a community) or grid worker (of grids)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(32))
    wechat: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))
    password_hash: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())

    grids: Mapped[list[Grid]] = relationship(secondary=grid_workers, lazy="selectin", viewonly=True)


class ApiKey(Base):
    """A machine client's key: acts as its user; only a hash of the secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Building(Base):
    """A building (楼栋) of a community, in one grid; bins stand in buildings."""

    __tablename__ = "buildings"
    __table_args__ = (UniqueConstraint("community_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    sorting_target: Mapped[float] = mapped_column(Float, default=0.85)


class Resident(Base):
    """One resident's file (一人一档)."""

    __tablename__ = "residents"

    id: Mapped[int] = mapped_column(primary_key=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"), index=True)
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id"))
    name: Mapped[str] = mapped_column(String(100))
    gender: Mapped[str | None] = mapped_column(String(8))
    birth_year: Mapped[int | None] = mapped_column(Integer)
    phone: Mapped[str | None] = mapped_column(String(32))
    unit: Mapped[str | None] = mapped_column(String(32))
    room: Mapped[str | None] = mapped_column(String(32))
    health_notes: Mapped[str] = mapped_column(Text, default="")
    service_needs: Mapped[list[str]] = mapped_column(JSON, default=list)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    vital_limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    home_lat: Mapped[float | None] = mapped_column(Float)
    home_lon: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=_now(), onupdate=_now()
    )

    contacts: Mapped[list[EmergencyContact]] = relationship(
        back_populates="resident",
        order_by="EmergencyContact.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )
    building: Mapped[Building | None] = relationship(lazy="selectin")


class EmergencyContact(Base):
    """Whom to call, in order, and by which channels (sms, wechat)."""

    __tablename__ = "emergency_contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(String(32))
    wechat: Mapped[str | None] = mapped_column(String(200))
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)

    resident: Mapped[Resident] = relationship(back_populates="contacts")


class Device(Base):
    """A wristband or bin known to the registry; `revoked` devices are locked out of the broker."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"), index=True)
    interval_s: Mapped[int] = mapped_column(Integer, default=60)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=_now())


class DeviceBinding(Base):
    """Who (or which building) a device served from `start` until `end` (None: now)."""

    __tablename__ = "device_bindings"
    __table_args__ = (
        Index("ix_binding_current", "device_id", "end"),
        # At most one open binding per device, even when two binds race.
        Index(
            "uq_binding_open",
            "device_id",
            unique=True,
            sqlite_where=text('"end" IS NULL'),
            postgresql_where=text('"end" IS NULL'),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id", ondelete="SET NULL"))
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id"))
    category: Mapped[str | None] = mapped_column(String(16))
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeviceState(Base):
    """The last known state of a device, kept by the ingester: served without touching InfluxDB.

    Times are epoch milliseconds, like the devices' own `ts`, so "silent for three
    intervals" is plain integer arithmetic in any database. No foreign key: the
    ingester records devices the registry does not know yet.
    """

    __tablename__ = "device_state"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    online: Mapped[bool | None] = mapped_column(Boolean)
    status_since_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int | None] = mapped_column(BigInteger, index=True)
    battery: Mapped[float | None] = mapped_column(Float, index=True)
    worn: Mapped[bool | None] = mapped_column(Boolean)
    last_reading: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Visit(Base):
    """A home visit a grid worker made: what was done, notes, readings taken."""

    __tablename__ = "visits"

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), index=True
    )
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    need: Mapped[str] = mapped_column(String(32))
    visited_at: Mapped[datetime] = mapped_column(UTCDateTime)
    notes: Mapped[str] = mapped_column(Text, default="")
    readings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
