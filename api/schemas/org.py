"""Communities, grids, buildings and users."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.common import BodyId, Name, ORMModel

RoleName = Literal["admin", "supervisor", "grid_worker"]


class CommunityCreate(BaseModel):
    name: Name = Field(examples=["幸福小区"])
    duty_phone: str | None = Field(None, max_length=32, examples=["0571-88001234"])
    duty_wechat: str | None = Field(None, max_length=200, examples=["wecombot://duty-key"])


class CommunityPublic(ORMModel):
    id: int
    name: str
    duty_phone: str | None
    duty_wechat: str | None


class GridCreate(BaseModel):
    community_id: BodyId
    name: Name = Field(examples=["网格01"])
    supervisor_id: BodyId | None = None
    worker_ids: list[BodyId] = Field(default_factory=list, max_length=100)


class UserBrief(ORMModel):
    id: int
    username: str
    full_name: str
    phone: str | None


class GridPublic(ORMModel):
    id: int
    community_id: BodyId
    name: str
    supervisor_id: int | None
    workers: list[UserBrief]


class BuildingCreate(BaseModel):
    grid_id: BodyId
    name: Name = Field(examples=["3栋"])
    sorting_target: float = Field(0.85, ge=0, le=1)


class BuildingPublic(ORMModel):
    id: int
    community_id: BodyId
    grid_id: BodyId
    name: str
    sorting_target: float


class UserCreate(BaseModel):
    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=128)
    full_name: Name = Field(examples=["王芳"])
    role: RoleName
    community_id: BodyId | None = None
    phone: str | None = Field(None, max_length=32)
    wechat: str | None = Field(None, max_length=200)


class UserPublic(ORMModel):
    id: int
    username: str
    full_name: str
    role: RoleName
    community_id: int | None
    phone: str | None
    is_active: bool
    created_at: datetime


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["区级数据平台"])


class ApiKeyCreated(BaseModel):
    id: int
    name: str
    key: str = Field(description="shown once; only a hash is kept")
