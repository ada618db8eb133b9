"""FastAPI dependencies, as `Annotated` types a route declares: the API's state, the service now serving, the
caller behind the request and the admin check.

Who is calling: with no API keys and no sign-in provider configured the API is open and every caller is an
unrestricted admin (bind it to loopback; `guards.HostCheck` answers loopback host names only). Otherwise every route
except /health, /docs and /openapi.json needs a credential, checked from the headers before the body is read
(`guards.Authenticate`): `X-API-Key: KEY` or `Authorization: Bearer KEY` (the key's groups decide which chunks
recall may return; a key holding '*' is an admin), or with a provider `Authorization: Bearer TOKEN`, a token it issued
(`app.oidc`: groups from the token's claim, admin with the admin group). Admin routes need an admin; every
refusal of one is written to the audit log.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from ..errors import KbError
from ..identity import OPEN, Caller, caller_for_key
from ..services.search import SearchService
from .state import ApiState

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
METRICS_READER = Caller("metrics-token", (), admin=False, via="metrics-token")  # `metrics_token`: GET /metrics only


def state_of(request: Request) -> ApiState:
    return request.app.state.kb


def _service(request: Request) -> SearchService:
    return state_of(request).require_ready()


def _credential(headers) -> tuple[str | None, bool]:
    """(the credential sent, whether it came as a bearer token)."""
    given = headers.get("x-api-key")
    if given:
        return given, False
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip(), True
    return None, False


def caller_from_headers(st: ApiState, headers, path: str) -> Caller:
    """The caller a request's headers name (its body is not needed, so `guards.Authenticate` runs this before the
    body is read); KbError unauthorized (401) without a good credential, not_ready (503) when the sign-in provider
    cannot check a token. May call the provider (blocking): run it off the event loop when a verifier is set."""
    keys, verifier = st.settings.api_keys, st.verifier
    given, bearer = _credential(headers)
    token = st.settings.metrics_token
    if path == "/metrics" and given is not None and token is not None and \
            hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        return METRICS_READER  # valid there and nowhere else
    if not keys and verifier is None:
        return OPEN
    if given is None:
        accepted = " or ".join(x for x in ("`X-API-Key: KEY`" if keys else "", "`Authorization: Bearer TOKEN` (a "
                                           "token of the sign-in provider)" if verifier else "") if x)
        if keys:
            accepted += " or `Authorization: Bearer KEY`" if not verifier else ""
        raise KbError("unauthorized", f"no credentials: send {accepted}", headers=_CHALLENGE)
    caller = caller_for_key(given, keys) if keys else None
    if caller is not None:
        return caller
    if verifier is not None and bearer:
        return verifier.caller(given)
    raise KbError("unauthorized", "unknown API key", headers=_CHALLENGE)


def _caller(request: Request) -> Caller:
    """The caller `guards.Authenticate` found before the body was read (or, on a path it lets through, found now)."""
    found = request.scope.get("state", {}).get("caller")
    return found if found is not None else caller_from_headers(state_of(request), request.headers, request.url.path)


def _admin(request: Request, caller: Annotated[Caller, Depends(_caller)]) -> Caller:
    action = f"{request.method} {request.url.path}"
    st = state_of(request)
    try:
        caller.require_admin(action, st.settings.auth.admin_group if st.verifier is not None else None)
    except KbError:
        st.audit.record(caller, action, "refused")
        raise
    return caller


StateDep = Annotated[ApiState, Depends(state_of)]
ServiceDep = Annotated[SearchService, Depends(_service)]
CallerDep = Annotated[Caller, Depends(_caller)]
AdminDep = Annotated[Caller, Depends(_admin)]
