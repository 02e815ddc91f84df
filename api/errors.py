"""Errors as JSON with a Chinese and an English message, never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from devices.registry import RegistryError

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


def error_body(
    status: int, code: str, message: str, message_en: str, **extra: object
) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "message_en": message_en, **extra}}


class ApiError(StarletteHTTPException):
    """An HTTP error with both messages; raised only in routes."""

    def __init__(self, status: int, code: str, message: str, message_en: str) -> None:
        super().__init__(status, message_en)
        self.code = code
        self.message = message
        self.message_en = message_en


def install(app: FastAPI) -> None:
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

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> JSONResponse:
        body = error_body(exc.status, exc.code, exc.message, exc.message_en)
        return JSONResponse(body, status_code=exc.status)

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
