"""Devices, their bindings and their status."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas.common import BodyId, ORMModel

Category = Literal["kitchen", "recyclable", "hazardous", "other"]


class DeviceCreate(BaseModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["w0001"])
    kind: Literal["wristband", "bin"]
    grid_id: BodyId | None = None
    interval_s: int = Field(60, ge=1, le=86_400, description="seconds between telemetry messages")


class DevicePublic(ORMModel):
    id: str
    kind: str
    grid_id: int | None
    interval_s: int
    revoked: bool
    created_at: datetime


class DeviceCredentials(BaseModel):
    """Shown once: the broker keeps only a hash."""

    device_id: str
    mqtt_username: str
    mqtt_password: str
    topics: str = Field(examples=["cw/v1/wristband/w0001/#"])
    broker_updated: bool


class BindRequest(BaseModel):
    resident_id: BodyId | None = None
    building_id: BodyId | None = None
    category: Category | None = None


class DeviceStatusPublic(BaseModel):
    device_id: str
    kind: str
    grid_id: int | None
    community_id: int | None
    online: bool
    silent: bool
    status: str | None = Field(description="what the device's status topic last said")
    last_seen: datetime | None
    battery: float | None
    worn: bool | None
    low_battery: bool
    last_reading: dict[str, Any]
