"""Back-pressure and size limits at the HTTP door.

`Admission` (`app.services.limits`, shared with the app) lets `max_active` model-bound requests run at once and
`max_waiting` wait; anything beyond is refused at once with 429 and a Retry-After, so an overloaded server answers
quickly instead of queueing without bound; `EarlyReject` gives that 429 before the request is even read while the
queue is full.
`BodyLimit` refuses request bodies over a byte limit (by route: uploads, /rerank, the rest) with 413 before they are
read into memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

from ..errors import KbError
from ..services.limits import BATCHED_ACTIVE, Admission, active_limit
from .errors import body, send_refusal

__all__ = ["BATCHED_ACTIVE", "Admission", "BodyLimit", "EarlyReject", "Limit", "active_limit"]

class EarlyReject:
    """ASGI middleware: while `admission` is full, requests to `paths` get their 429 on the event loop, before the
    body is read and parsed and before a worker thread is taken. Under overload those steps cost more than the
    refusal itself, so refusing after them is slow exactly when it matters. `on_reject(path)` counts it."""

    def __init__(self, app, admission: Admission, paths: frozenset[str], on_reject=None):
        self.app, self.admission, self.paths, self.on_reject = app, admission, paths, on_reject

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths or not self.admission.full():
            return await self.app(scope, receive, send)
        if self.on_reject is not None:
            self.on_reject(scope["path"], scope["method"])
        a = self.admission
        payload = json.dumps(body(f"server busy: {a.active} requests running and {a.waiting} waiting (limit "
                                  f"{a.max_waiting}); retry shortly", "overloaded")).encode()
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"retry-after", b"1"), (b"connection", b"close")]})  # the body was not read
        await send({"type": "http.response.body", "body": payload})


class Limit(NamedTuple):
    max_bytes: int
    setting: str  # what sets it, named in the 413


class BodyLimit:
    """ASGI middleware: 413 for bodies over their path's limit (`by_path`, else `default`), by Content-Length
    before anything is read, or counted while a chunked body streams in."""

    def __init__(self, app, default: Limit, by_path: Mapping[str, Limit] | None = None):
        self.app, self.default, self.by_path = app, default, dict(by_path or {})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.by_path.get(scope["path"], self.default)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit.max_bytes:
                return await self._refuse(send, limit)
            return await self.app(scope, receive, send)  # the server stops reading at Content-Length
        # Chunked upload: read it here, at most max_bytes of it, then hand the body on in one piece.
        parts, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            parts.append(message.get("body", b""))
            seen += len(parts[-1])
            if seen > limit.max_bytes:
                return await self._refuse(send, limit)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(parts), "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send, limit: Limit) -> None:
        mb = limit.max_bytes / 2**20
        await send_refusal(send, KbError("too_large", f"request body over the limit of {mb:.3g} MB (setting "
                                                      f"{limit.setting})"))
