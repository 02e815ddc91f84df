"""Shared shapes: pages of results, error bodies."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Generic, TypeVar

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: the items and how many there are in all."""

    data: list[T]
    count: int


# Ids are int4 columns: anything larger could only be a guess, and would overflow the driver.
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
QueryId = Annotated[int | None, Query(ge=1, le=2**31 - 1)]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
BodyId = Annotated[int, Field(ge=1, le=2**31 - 1)]

EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
CLOCK_SKEW: Final = timedelta(minutes=5)


def _in_service_time(value: datetime) -> datetime:
    """A time the service can hold: from 2000 to a few minutes from now; without an
    offset it is UTC. A typo like 9999 or 1025 is refused, not stored (or queried)."""
    at = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if not EARLIEST <= at <= datetime.now(UTC) + CLOCK_SKEW:
        msg = "must lie between 2000-01-01 and now (5 minutes of clock skew allowed)"
        raise ValueError(msg)
    return at


# Every time the API takes: a visit's, the bounds of a report or a chart.
Moment = Annotated[datetime, AfterValidator(_in_service_time)]

# Bidirectional overrides and isolates: text shown to families and workers must read as typed.
_BIDI: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _plain_name(value: str) -> str:
    """A person's or a place's name: no control characters, no direction overrides."""
    if any(c in _BIDI or unicodedata.category(c) == "Cc" for c in value):
        msg = "must not contain control characters or text-direction overrides"
        raise ValueError(msg)
    if not value.strip():
        msg = "must not be blank"
        raise ValueError(msg)
    return value


# The name of a resident, a contact, a user, a community, a grid or a building.
Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_plain_name)]


class ErrorDetail(BaseModel):
    code: str
    message: str
    message_en: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ORMModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


ERRORS = {
    400: {"model": ErrorBody, "description": "请求体不是 JSON / body is not JSON"},
    401: {"model": ErrorBody, "description": "未登录 / not authenticated"},
    403: {"model": ErrorBody, "description": "没有权限 / not allowed"},
    404: {"model": ErrorBody, "description": "未找到 / not found"},
    409: {"model": ErrorBody, "description": "冲突 / conflict"},
    422: {"model": ErrorBody, "description": "输入有误 / invalid input"},
    429: {"model": ErrorBody, "description": "尝试过于频繁 / too many attempts (see Retry-After)"},
    503: {"model": ErrorBody, "description": "依赖的服务不可用 / a service it needs is down"},
}
