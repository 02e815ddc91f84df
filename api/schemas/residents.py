"""One resident's file (一人一档): profile, contacts, visits."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, FiniteFloat, model_validator

from api.schemas.common import BodyId, Moment, Name, ORMModel
from core.phones import PHONE_PATTERN

Need = Literal["daily_check", "weekly_visit", "monthly_visit"]
# How a contact is told (not protocol.models.Channel, an MQTT topic's channel).
ContactChannel = Literal["sms", "wechat"]


class ContactIn(BaseModel):
    name: Name = Field(examples=["张小明"])
    relation: str = Field(min_length=1, max_length=32, examples=["儿子"])
    phone: str | None = Field(None, pattern=PHONE_PATTERN, examples=["13800138000"])
    wechat: str | None = Field(None, max_length=200, examples=["wxpusher://TOKEN/UID_abc"])
    channels: list[ContactChannel] = Field(default_factory=lambda: list[ContactChannel](["sms"]))


class ContactPublic(ContactIn, ORMModel):
    id: int
    position: int


class VitalLimits(BaseModel):
    """Personal limits that override the defaults of the rules."""

    hr_high: float | None = Field(None, ge=30, le=250)
    hr_low: float | None = Field(None, ge=20, le=200)
    spo2_low: float | None = Field(None, ge=50, le=100)
    sbp_high: float | None = Field(None, ge=80, le=260)
    temp_high: float | None = Field(None, ge=35, le=43)

    @model_validator(mode="after")
    def _low_below_high(self) -> Self:
        if self.hr_low is not None and self.hr_high is not None and self.hr_low >= self.hr_high:
            msg = "hr_low must be below hr_high"
            raise ValueError(msg)
        return self


class ResidentBase(BaseModel):
    name: Name = Field(examples=["张建国"])
    gender: Literal["男", "女", "male", "female"] | None = None
    birth_year: int | None = Field(None, ge=1900, le=2100, examples=[1942])
    phone: str | None = Field(None, pattern=PHONE_PATTERN)
    building_id: BodyId | None = None
    unit: str | None = Field(None, max_length=32, examples=["2单元"])
    room: str | None = Field(None, max_length=32, examples=["201"])
    health_notes: str = Field("", max_length=4000, examples=["高血压，服用氨氯地平"])
    service_needs: list[Need] = Field(default_factory=list, examples=[["daily_check"]])
    tags: list[str] = Field(default_factory=list, examples=[["lives-alone"]])
    vital_limits: VitalLimits = Field(default_factory=VitalLimits)
    home_lat: float | None = Field(None, ge=-90, le=90)
    home_lon: float | None = Field(None, ge=-180, le=180)


class ResidentCreate(ResidentBase):
    grid_id: BodyId
    contacts: list[ContactIn] = Field(default_factory=list, max_length=10)


class ResidentUpdate(BaseModel):
    """Only the fields sent change."""

    grid_id: BodyId | None = None
    name: Name | None = None
    gender: Literal["男", "女", "male", "female"] | None = None
    birth_year: int | None = Field(None, ge=1900, le=2100)
    phone: str | None = Field(None, pattern=PHONE_PATTERN)
    building_id: BodyId | None = None
    unit: str | None = Field(None, max_length=32)
    room: str | None = Field(None, max_length=32)
    health_notes: str | None = Field(None, max_length=4000)
    service_needs: list[Need] | None = None
    tags: list[str] | None = None
    vital_limits: VitalLimits | None = None
    home_lat: float | None = Field(None, ge=-90, le=90)
    home_lon: float | None = Field(None, ge=-180, le=180)
    contacts: list[ContactIn] | None = Field(None, max_length=10)


class ResidentPublic(ORMModel):
    id: int
    grid_id: BodyId
    name: str
    gender: str | None
    birth_year: int | None
    phone: str | None
    building_id: int | None
    unit: str | None
    room: str | None
    health_notes: str
    service_needs: list[str]
    tags: list[str]
    vital_limits: dict[str, Any]
    home_lat: float | None
    home_lon: float | None
    contacts: list[ContactPublic]
    created_at: datetime
    updated_at: datetime


class VisitCreate(BaseModel):
    need: Need = "daily_check"
    visited_at: Moment | None = Field(None, description="defaults to now; not in the future")
    notes: str = Field("", max_length=4000, examples=["精神状态良好，血压 135/85"])
    readings: dict[str, FiniteFloat] = Field(
        default_factory=dict, max_length=20, examples=[{"sbp": 135, "dbp": 85}]
    )


class VisitPublic(ORMModel):
    id: int
    resident_id: BodyId
    worker_id: int | None
    need: str
    visited_at: datetime
    notes: str
    readings: dict[str, Any]


class DueVisitPublic(BaseModel):
    resident_id: BodyId
    resident_name: str
    grid_id: BodyId
    need: str
    last_visit: datetime | None
    due_at: datetime
    overdue: bool


class BindingPublic(ORMModel):
    id: int
    device_id: str
    resident_id: int | None
    building_id: int | None
    category: str | None
    start: datetime
    end: datetime | None


class ResidentExport(BaseModel):
    """Everything held about one resident."""

    resident: ResidentPublic
    visits: list[VisitPublic]
    bindings: list[BindingPublic]


class TelemetryPoint(BaseModel):
    time: datetime
    values: dict[str, float | None]


class TelemetryHistory(BaseModel):
    resident_id: BodyId
    start: datetime
    end: datetime
    interval_s: int = Field(description="the resolution InfluxDB aggregated to (mean per bucket)")
    points: list[TelemetryPoint]
