"""ASGI middleware that refuses a request from its headers alone, before anything reads its body.

- `HostCheck`: which host names the API answers. In open mode (no API keys, no sign-in) only loopback names:
  otherwise any web page could reach it by DNS rebinding (a name of the attacker's that resolves to 127.0.0.1).
  `allowed_hosts` adds names, and once set it holds in every mode (like Django's ALLOWED_HOSTS).
- `CrossSiteCheck`: a state-changing request (POST, PUT, PATCH, DELETE) from another site's page is refused in every
  mode. A browser sends such a form or `fetch` without a preflight, with whatever it holds; curl and other
  programs send no `Origin`, and the app's own pages the same origin, so neither is affected.
- `Authenticate`: who is calling (`deps.caller_from_headers`), before the body is read, so that a request without a
  good credential costs neither the reading nor the parsing of its body. The routes' dependencies still decide
  what the caller may do (`deps.AdminDep`).

Each answers in the shape of every other error (`errors.send_refusal`). Starlette's TrustedHostMiddleware would do
the host check but answers a plain-text 400 that says nothing of how to configure the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import anyio.to_thread
from starlette.datastructures import Headers

from ..errors import KbError
from .deps import caller_from_headers
from .errors import send_refusal

LOOPBACK = ("localhost", "127.0.0.1", "::1")
PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_name(value: str | None) -> str | None:
    """The host name of a Host header (`kb.example.com:8000` → `kb.example.com`, `[::1]:8000` → `::1`), lower case;
    None when it is missing or not a host."""
    if not value:
        return None
    try:
        return urlsplit("//" + value).hostname or None
    except ValueError:
        return None


class HostCheck:
    """403 for a Host header that is not loopback or in `allowed` (`name`, `*.domain`, `*` for any). With
    `open_mode` False and nothing in `allowed`, every host is answered (a credential is needed anyway)."""

    def __init__(self, app, allowed: Sequence[str], open_mode: bool):
        self.app, self.open_mode = app, open_mode
        self.allowed = tuple(h.lower().strip("[]") for h in allowed)
        self.enforce = (open_mode or bool(self.allowed)) and "*" not in self.allowed

    def allows(self, host: str) -> bool:
        return host in LOOPBACK or any(host == p or (p.startswith("*.") and host.endswith(p[1:]))
                                       for p in self.allowed)

    async def __call__(self, scope, receive, send):
        if not self.enforce or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        raw = Headers(scope=scope).get("host")
        host = host_name(raw)
        if host is not None and self.allows(host):
            return await self.app(scope, receive, send)
        if self.open_mode:
            why = (f"this server is in open mode (no API keys, no sign-in) and answers only localhost, 127.0.0.1 "
                   f"and [::1], not the host {raw!r}: a web page could otherwise reach it. Use http://localhost:PORT, "
                   "or configure API keys or KB_AUTH_PROVIDER_URL (docs/SECURITY.md), or add the name to "
                   "KB_ALLOWED_HOSTS (setting allowed_hosts)")
        else:
            why = f"the host {raw!r} is not served here: add it to KB_ALLOWED_HOSTS (setting allowed_hosts)"
        await send_refusal(send, KbError("forbidden", why))


class CrossSiteCheck:
    """403 for a state-changing request whose `Origin` is another site's (not this Host, not one of `trusted`, the
    CORS origins), or that a browser marks `Sec-Fetch-Site: cross-site`. No `Origin` (curl, scripts): let through."""

    def __init__(self, app, trusted: Sequence[str]):
        self.app, self.trusted = app, frozenset(o.rstrip("/").lower() for o in trusted)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in STATE_CHANGING:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() in self.trusted:
            return await self.app(scope, receive, send)
        if origin is not None:
            try:
                netloc = urlsplit(origin).netloc.lower()  # "null" (a sandboxed page, a file) has none
            except ValueError:
                netloc = ""
            cross = netloc != headers.get("host", "").lower()
        else:
            cross = headers.get("sec-fetch-site") == "cross-site"
        if not cross:
            return await self.app(scope, receive, send)
        await send_refusal(send, KbError("forbidden", f"a {scope['method']} from another site's page (Origin "
                                                      f"{origin!r}) is refused; to let a web app on another origin "
                                                      "call this API, add its origin to KB_CORS_ORIGINS (setting "
                                                      "cors_origins)"))


class Authenticate:
    """401 (or 503 while the sign-in provider cannot be reached) for a request without a good credential, before
    its body is read; the caller found is handed to the routes in `scope["state"]["caller"]`. /health and the API
    docs need none; neither does an OPTIONS request (CORS preflights carry no credential)."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        headers, st = Headers(scope=scope), self.state
        try:
            if st.verifier is None:  # keys only: a dictionary look-up
                caller = caller_from_headers(st, headers, scope["path"])
            else:  # a token may need the provider (discovery, keys, introspection): off the event loop
                caller = await anyio.to_thread.run_sync(caller_from_headers, st, headers, scope["path"])
        except KbError as exc:
            return await send_refusal(send, exc)
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)
