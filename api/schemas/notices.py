"""Area notices (a rainstorm warning): what a supervisor raises, and who is confirmed safe."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, model_validator

from api.schemas.common import BodyId, ORMModel

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class NoticeCreate(BaseModel):
    """The area: grids and/or buildings, narrowed to residents carrying one of `tags` when
    tags are given; tags alone: every resident you may see who carries one."""

    title: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ] = Field(examples=["暴雨预警"])
    text: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)
    ] = Field(examples=["今晚有大暴雨，请确认低洼住户安全，必要时协助转移"])
    grid_ids: list[BodyId] = Field(default_factory=list, max_length=100)
    building_ids: list[BodyId] = Field(default_factory=list, max_length=500)
    tags: list[Tag] = Field(default_factory=list, max_length=20, examples=[["low-lying"]])

    @model_validator(mode="after")
    def _some_area(self) -> NoticeCreate:
        if not (self.grid_ids or self.building_ids or self.tags):
            msg = "name grid_ids, building_ids or tags"
            raise ValueError(msg)
        return self


class NoticePublic(ORMModel):
    id: int
    title: str
    text: str
    area: dict[str, Any]
    created_by: str
    created_at: datetime
    closed_at: datetime | None = Field(description="when the last resident was confirmed safe")
    residents: int = Field(0, description="residents to check (in the grids you may see)")
    safe: int = Field(0, description="of them, confirmed safe")


class NoticeCheckPublic(BaseModel):
    resident_id: int
    resident_name: str
    home: str = Field(description="building, unit and room", examples=["3栋2单元201"])
    grid_id: int
    safe: bool
    safe_at: datetime | None
    confirmed_by: str | None
    note: str | None


class NoticeGridProgress(BaseModel):
    grid_id: int
    grid_name: str | None
    residents: int
    safe: int
    pending: int
    checks: list[NoticeCheckPublic]


class NoticeDetail(NoticePublic):
    grids: list[NoticeGridProgress]
    messages: dict[str, int] = Field(
        description="the notice's messages by state (pending, sent, failed...)",
        examples=[{"pending": 3, "sent": 12}],
    )


class SafeRequest(BaseModel):
    note: str = Field("", max_length=2000, examples=["已电话确认，老人在家，一切正常"])
