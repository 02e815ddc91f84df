"""Dependency aliases of the API: the parts it is handed, the session, the user and scope."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError
from core.db import Database
from core.influx import InfluxClient
from core.secrets import hash_api_key, split_api_key, token_subject
from devices.access import Role, Scope
from devices.broker.provisioning import BrokerProvisioner
from devices.tables import ApiKey, User

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


@dataclass(frozen=True, slots=True)
class Health:
    """What `/healthz` reports: whether the process is healthy, and its ingest figures if any."""

    healthy: bool = True
    ingest: Mapping[str, object] | None = None


# What the root hands the API: the process's health, and its metrics beyond the API's own.
HealthCheck = Callable[[], Health]
MetricsText = Callable[[], str]


def get_health(request: Request) -> HealthCheck:
    """The process's health check, handed in by the root."""
    health: HealthCheck = request.app.state.health
    return health


def get_metrics(request: Request) -> MetricsText:
    """The process's metrics beyond the API's own, handed in by the root."""
    metrics: MetricsText = request.app.state.metrics
    return metrics


def get_database(request: Request) -> Database:
    """The registry database."""
    database: Database = request.app.state.database
    return database


def get_influx(request: Request) -> InfluxClient:
    """The InfluxDB client for telemetry history."""
    influx: InfluxClient = request.app.state.influx
    return influx


def get_provisioner(request: Request) -> BrokerProvisioner:
    """Where device accounts on the broker are made and revoked."""
    provisioner: BrokerProvisioner = request.app.state.provisioner
    return provisioner


async def get_session(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[AsyncSession]:
    """One session per request."""
    async with database.sessions() as session:
        yield session


HealthDep = Annotated[HealthCheck, Depends(get_health)]
MetricsDep = Annotated[MetricsText, Depends(get_metrics)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
InfluxDep = Annotated[InfluxClient, Depends(get_influx)]
ProvisionerDep = Annotated[BrokerProvisioner, Depends(get_provisioner)]

_UNAUTHENTICATED = ApiError(
    401,
    "not_authenticated",
    "未登录或登录已过期，请重新登录",
    "not authenticated: log in again or send a valid X-API-Key",
)


async def get_current_user(
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Security(oauth2)],
    api_key: Annotated[str | None, Security(api_key_header)],
) -> User:
    """The user behind a bearer token (OAuth2 password flow) or an X-API-Key."""
    user: User | None = None
    if token:
        subject = token_subject(token, request.app.state.secret_key)
        if subject is not None and subject.isdigit():
            user = await session.get(User, int(subject))
    elif api_key:
        parts = split_api_key(api_key)
        if parts is not None:
            prefix, secret = parts
            key = await session.scalar(
                select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
            )
            if key is not None and key.key_hash == hash_api_key(secret):
                user = await session.get(User, key.user_id)
    if user is None or not user.is_active:
        raise _UNAUTHENTICATED
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_scope(user: CurrentUser) -> Scope:
    """What the current user may see and change."""
    return Scope.of(user)


ScopeDep = Annotated[Scope, Depends(get_scope)]


def require_admin(scope: ScopeDep) -> Scope:
    """The scope of an administrator; anyone else gets 403."""
    if scope.role is not Role.ADMIN:
        raise ApiError(
            403, "forbidden", "只有管理员可以这样做", "only an administrator may do this"
        )
    return scope


AdminScope = Annotated[Scope, Depends(require_admin)]
