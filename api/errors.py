"""Errors as JSON with a Chinese and an English message, never a stack trace."""

from __future__ import annotations

import logging
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from alerts.exceptions import (
    AlertNotFound,
    LifecycleError,
    NoticeError,
    NoticeForbidden,
    NoticeNotFound,
)
from devices.exceptions import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RegistryError,
)

log = logging.getLogger(__name__)

_STATUS_TEXT = {
    400: ("请求有误", "bad request"),
    401: ("未登录或登录已过期", "not authenticated"),
    403: ("没有权限", "not allowed"),
    404: ("未找到", "not found"),
    405: ("不支持该操作", "method not allowed"),
    409: ("与现有数据冲突", "conflict"),
    422: ("输入不符合要求", "invalid input"),
    500: ("服务器内部错误，请稍后再试", "internal error, please try again later"),
}


# The one table from domain errors to HTTP: the nearest class in an error's MRO wins.
DOMAIN_STATUS: Final[dict[type[Exception], int]] = {
    NotFoundError: 404,
    ForbiddenError: 403,
    ConflictError: 409,
    InvalidInputError: 422,
    RegistryError: 400,
    AlertNotFound: 404,
    LifecycleError: 409,
    NoticeNotFound: 404,
    NoticeForbidden: 403,
    NoticeError: 422,
}
# The `code` of an error that carries none.
_STATUS_CODE: Final = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "invalid_input",
}


def status_of(exc: Exception) -> int:
    """The HTTP status a domain error answers with (500 for one the table does not know)."""
    for cls in type(exc).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return 500


def error_body(
    status: int, code: str, message: str, message_en: str, **extra: object
) -> dict[str, object]:
    """The JSON body of every error the API answers with."""
    return {"error": {"code": code, "message": message, "message_en": message_en, **extra}}


class ApiError(StarletteHTTPException):
    """An HTTP error with both messages; raised only in routes."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        message_en: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message_en, headers=headers)
        self.code = code
        self.message = message
        self.message_en = message_en


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    zh, en = _STATUS_TEXT.get(status, ("请求失败", "request failed"))
    body = error_body(
        status,
        getattr(exc, "code", _STATUS_CODE.get(status, f"http_{status}")),
        getattr(exc, "message", zh),
        getattr(exc, "message_en", str(exc) or en),
    )
    return JSONResponse(body, status_code=status)


def install(app: FastAPI) -> None:
    """Answer HTTP, domain, validation and unexpected errors with the same JSON body."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, ApiError):
            body = error_body(exc.status_code, exc.code, exc.message, exc.message_en)
        else:
            zh, en = _STATUS_TEXT.get(exc.status_code, ("请求失败", "request failed"))
            body = error_body(exc.status_code, f"http_{exc.status_code}", zh, str(exc.detail) or en)
        return JSONResponse(
            body, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    for domain_error in DOMAIN_STATUS:
        app.add_exception_handler(domain_error, _domain_error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        zh, en = _STATUS_TEXT[422]
        return JSONResponse(error_body(422, "invalid_input", zh, en, problems=problems), 422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        zh, en = _STATUS_TEXT[500]
        return JSONResponse(error_body(500, "internal_error", zh, en), 500)
