"""Log in (OAuth2 password flow) and manage one's API keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select

from api.deps import CurrentUser, SessionDep
from api.errors import ApiError
from api.schemas.common import ERRORS, Id
from api.schemas.org import ApiKeyCreate, ApiKeyCreated, Token, UserPublic
from api.throttle import LoginThrottle
from core.secrets import check_password, create_access_token, new_api_key
from devices.tables import ApiKey, User

router = APIRouter(prefix="/auth", tags=["auth"], responses={k: ERRORS[k] for k in (400, 401, 422)})
TOKEN_LIFETIME = timedelta(minutes=30)


@router.post(
    "/token",
    summary="Log in with username and password; get a 30-minute token",
    responses={429: ERRORS[429]},
)
async def login(
    request: Request, session: SessionDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request.client.host if request.client is not None else "unknown"
    wait = throttle.retry_after(form.username, address)
    if wait:
        raise ApiError(
            429,
            "too_many_attempts",
            f"登录失败次数过多，请{wait}秒后再试",
            f"too many failed logins; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    found = await session.scalar(select(User).where(User.username == form.username))
    user = found if found is not None and found.is_active else None
    # Checked even without a user (against a dummy hash): no answer comes faster.
    right = await check_password(form.password, user.password_hash if user else None)
    if user is None or not right:
        throttle.failed(form.username, address)
        raise ApiError(401, "bad_credentials", "用户名或密码错误", "wrong username or password")
    throttle.succeeded(form.username)
    token = create_access_token(str(user.id), request.app.state.secret_key, TOKEN_LIFETIME)
    return Token(access_token=token, expires_in=int(TOKEN_LIFETIME.total_seconds()))


@router.get("/me", summary="Who am I")
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.post("/api-keys", status_code=201, summary="Create an API key for a machine client")
async def create_api_key(
    body: ApiKeyCreate, user: CurrentUser, session: SessionDep
) -> ApiKeyCreated:
    key, prefix, key_hash = new_api_key()
    record = ApiKey(user_id=user.id, name=body.name, prefix=prefix, key_hash=key_hash)
    session.add(record)
    await session.commit()
    return ApiKeyCreated(id=record.id, name=record.name, key=key)


@router.delete(
    "/api-keys/{key_id}",
    status_code=204,
    summary="Revoke one of my API keys",
    responses={404: ERRORS[404]},
)
async def revoke_api_key(key_id: Id, user: CurrentUser, session: SessionDep) -> None:
    record = await session.get(ApiKey, key_id)
    if record is None or record.user_id != user.id:
        raise ApiError(404, "not_found", "未找到该密钥", "API key not found")
    record.revoked_at = datetime.now(UTC)
    await session.commit()
