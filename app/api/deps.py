"""FastAPI dependencies, as `Annotated` types a route declares: the API's state, the service now serving, the
caller behind the request and the admin check.

Who is calling: with no API keys and no sign-in provider configured the API is open and every caller is an
unrestricted admin (bind it to loopback). Otherwise every route except /health, /docs and /openapi.json needs a
credential: `X-API-Key: KEY` or `Authorization: Bearer KEY` (the key's groups decide which chunks recall may
return; a key holding '*' is an admin), or with a provider `Authorization: Bearer TOKEN`, a token it issued
(`app.oidc`: groups from the token's claim, admin with the admin group). Admin routes need an admin; every
refusal of one is written to the audit log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..errors import KbError
from ..identity import OPEN, Caller, caller_for_key
from ..services.search import SearchService
from .state import ApiState

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def state_of(request: Request) -> ApiState:
    return request.app.state.kb


def _service(request: Request) -> SearchService:
    return state_of(request).require_ready()


def _credential(request: Request) -> tuple[str | None, bool]:
    """(the credential sent, whether it came as a bearer token)."""
    given = request.headers.get("x-api-key")
    if given:
        return given, False
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip(), True
    return None, False


def _caller(request: Request) -> Caller:
    st = state_of(request)
    keys, verifier = st.settings.api_keys, st.verifier
    if not keys and verifier is None:
        return OPEN
    given, bearer = _credential(request)
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
