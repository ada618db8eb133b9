"""Errors in one place: every failure answers `{"error": message, "error_type": kind}` with the status that
`app.errors` gives its kind.

User input never causes a 500: domain errors answer by their kind (`KbError`, or a lower layer's error with a
`kind`), request validation is 422, body limits 413, overload 429, not ready 503. A 500 means a bug, and its body
says so without leaking a traceback.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..errors import TABLE, KbError, outcome_of

log = logging.getLogger(__name__)


def body(message: str, error_type: str, **extra) -> dict:
    return {"error": message, "error_type": error_type, **extra}


async def send_refusal(send, exc: KbError) -> None:
    """Answer `exc` from an ASGI middleware, in the shape of every other error, before the app has read the
    request's body: the connection is closed afterwards, so the unread body is never read."""
    o = exc.outcome
    payload = json.dumps(body(exc.message, o.error_type)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
               (b"connection", b"close")]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (exc.headers or {}).items()]
    await send({"type": "http.response.start", "status": o.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class ErrorBody(BaseModel):
    """What every 4xx/5xx answers (422 adds `details`: the failing fields)."""

    error: str
    error_type: str
    details: list[dict] | None = None


_BY_STATUS = {o.status: o.error_type for o in TABLE.values()} | {405: "method_not_allowed",
                                                                  415: "unsupported_media_type"}


def error_responses(*statuses: int) -> dict[int, dict]:
    """OpenAPI entries for the error statuses a router may answer, so that clients (and schema-driven fuzzers)
    know them; 422 replaces FastAPI's default `{detail}` shape with ours."""
    return {code: {"model": ErrorBody, "description": _BY_STATUS[code]} for code in statuses}


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
    @app.exception_handler(KbError)
    async def _kb_error(request: Request, exc: KbError):
        o = exc.outcome
        return JSONResponse(body(exc.message, o.error_type), status_code=o.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        details = [{"loc": [_sendable(x) for x in e.get("loc", ())], "msg": _sendable(e.get("msg", ""))}
                   for e in exc.errors()]
        return JSONResponse(body(_validation_message(exc), "validation_error", details=details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed(request)}
        return JSONResponse(body(str(exc.detail), _BY_STATUS.get(exc.status_code, "http_error")),
                            status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception):
        outcome = outcome_of(exc)  # a lower layer's domain error (IndexLocked, ModelNotAvailable, ...)
        if outcome is not None:
            return JSONResponse(body(str(exc), outcome.error_type), status_code=outcome.status)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(body("internal error (a bug): see the server log", "internal_error"), status_code=500)


def _allowed(request: Request) -> str:
    """The methods of every route at the request's path: the router's own 405 names only the first route it tried,
    and a path served by two routes (GET and POST /bestbets) would then seem to take one method."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))
