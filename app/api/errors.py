"""Errors in one place: every failure answers `{"error": message, "error_type": kind}` with a 4xx/5xx status.

User input never causes a 500: validation errors are 422 (or 400 for an empty query), limits 413, overload 429,
not ready 503. A 500 means a bug, and its body says so without leaking a traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raise from a route to answer `status` with a clear message; `headers` e.g. Retry-After for 429/503."""

    def __init__(self, status: int, message: str, error_type: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type, self.headers = status, message, error_type, headers


def body(message: str, error_type: str, **extra) -> dict:
    return {"error": message, "error_type": error_type, **extra}


class ErrorBody(BaseModel):
    """What every 4xx/5xx answers (422 adds `details`: the failing fields)."""

    error: str
    error_type: str
    details: list[dict] | None = None


def error_responses(*statuses: int) -> dict[int, dict]:
    """OpenAPI entries for the error statuses a router may answer, so that clients (and schema-driven fuzzers)
    know them; 422 replaces FastAPI's default `{detail}` shape with ours."""
    return {code: {"model": ErrorBody, "description": _TYPES[code]} for code in statuses}


_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
          429: "overloaded", 503: "not_ready"}


def _sendable(part: object) -> str | int:
    """A location part as it can be sent back: a JSON key may hold a lone surrogate that UTF-8 cannot encode."""
    if isinstance(part, int):
        return part
    return str(part).encode("utf-8", "backslashreplace").decode("utf-8")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(_sendable(x)) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {_sendable(e.get('msg', 'invalid'))}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(body(exc.message, exc.error_type), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        details = [{"loc": [_sendable(x) for x in e.get("loc", ())], "msg": _sendable(e.get("msg", ""))}
                   for e in exc.errors()]
        return JSONResponse(body(_validation_message(exc), "validation_error", details=details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return JSONResponse(body(str(exc.detail), _TYPES.get(exc.status_code, "http_error")),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(body("internal error (a bug): see the server log", "internal_error"), status_code=500)
