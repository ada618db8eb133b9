"""Who is using this browser session: the signed-in user as a `Caller` (groups from their ID token, admin when
they are in the admin group), or everyone in open mode (no provider configured).

Streamlit's own `st.login()` does the OIDC login (Authlib) and keeps the identity in a signed cookie; `kb ui`
writes the provider settings as Streamlit's `[auth]` secrets. Groups come from the provider only: nothing a person
can change in the page widens what they see.

The cookie lives for 30 days and holds the ID token's groups as they were at login, so the provider is asked
again (`recheck`): at the first page of a browser session, every `auth.recheck_s` seconds after that, and when the
ID token expires, at its userinfo endpoint with the access token the login kept (`expose_tokens`). Its groups
claim then replaces the token's; a refused token (expired, revoked, the account disabled), another subject or a
provider that cannot be asked signs the person out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import streamlit as st

from app.identity import OPEN, Caller, caller_from_claims
from app.settings import AuthSettings, Settings

RECHECK_KEY = "kb_auth_recheck"  # st.session_state: this browser session's last answer from the provider


@dataclass(frozen=True)
class Recheck:
    """The provider's last good answer for this browser session's login."""

    sub: str
    at: float  # when (time.time())
    claims: dict[str, Any]  # its userinfo claims


def recheck_due(last: Recheck | None, sub: str, now: float, interval_s: float, expires: Any) -> bool:
    """Whether the provider must be asked now: never asked for this subject, `interval_s` passed since, or the ID
    token's `expires` (its `exp` claim, epoch seconds) passed since the last answer."""
    if last is None or last.sub != sub or now - last.at >= interval_s:
        return True
    return isinstance(expires, (int, float)) and last.at < expires <= now


@st.cache_data(ttl=300, show_spinner=False)
def _userinfo_endpoint(discovery_url: str) -> str:
    """The provider's userinfo endpoint from its discovery document (failures raise, so they are not cached)."""
    r = httpx.get(discovery_url, timeout=5.0, follow_redirects=True)
    r.raise_for_status()
    endpoint = r.json()["userinfo_endpoint"]
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError("the discovery document names no userinfo_endpoint")
    return endpoint


def userinfo(auth: AuthSettings, access_token: str) -> dict[str, Any] | None:
    """The provider's claims now for the holder of `access_token`, or None when it refuses the token or cannot be
    asked (both mean: sign out; a provider that is down is never a reason to keep old groups)."""
    try:
        r = httpx.get(_userinfo_endpoint(auth.discovery_url), headers={"Authorization": f"Bearer {access_token}"},
                      timeout=5.0)
        claims = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None


def recheck(auth: AuthSettings, claims: Mapping[str, Any]) -> dict[str, Any] | None:
    """The login's claims with the groups the provider gives now (asked when `recheck_due`; the answer is kept in
    the browser session), or None: sign the person out. A userinfo answer without the groups claim (Entra ID's, for
    one) leaves the ID token's groups, which then last as long as the access token is accepted."""
    sub = str(claims.get("sub") or "")
    last = st.session_state.get(RECHECK_KEY)
    now = time.time()
    if recheck_due(last, sub, now, auth.recheck_s, claims.get("exp")):
        token = (claims.get("tokens") or {}).get("access")
        info = userinfo(auth, token) if token else None
        if info is None or str(info.get("sub") or "") != sub:
            st.session_state.pop(RECHECK_KEY, None)
            return None
        last = st.session_state[RECHECK_KEY] = Recheck(sub, now, info)
    fresh = dict(claims)
    if auth.groups_claim in last.claims:
        fresh[auth.groups_claim] = last.claims[auth.groups_claim]
    return fresh


def signed_in() -> bool:
    """Whether this browser session has a login (False when Streamlit has no `[auth]` configured at all)."""
    return bool(st.user.get("is_logged_in", False))


def caller(s: Settings) -> Caller | None:
    """The caller of this session: OPEN in open mode, the signed-in user with sign-in (groups as the provider gives
    them now: `recheck`), None before login or once the re-check has signed them out."""
    if not s.auth.configured:
        return OPEN
    if not signed_in():
        return None
    claims = recheck(s.auth, st.user.to_dict())
    if claims is None:
        st.logout()  # ends the cookie too; the next run shows the sign-in page
        return None
    return caller_from_claims(claims, s.auth.groups_claim, s.auth.admin_group, via="app")


@st.cache_data(ttl=30, show_spinner=False)
def provider_problem(discovery_url: str) -> str | None:
    """Why sign-in cannot start (the provider's discovery document cannot be read), or None when it can."""
    try:
        r = httpx.get(discovery_url, timeout=3.0, follow_redirects=True)
        r.raise_for_status()
        r.json()["authorization_endpoint"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


def sign_in_address(opened: str | None, redirect_uri: str | None) -> str | None:
    """Where sign-in works, when this page was `opened` at another scheme, host or port than the `redirect_uri`
    (None when it is the same, or either is unknown). Sign-in keeps its state in a cookie of the host it starts at
    and comes back to the redirect URI's host, so started anywhere else it comes back without that state and
    fails (Streamlit only logs "Missing provider for OAuth callback"): people must be sent there instead."""
    if not opened or not redirect_uri:
        return None
    if _origin(opened) == _origin(redirect_uri):
        return None
    uri = urlsplit(redirect_uri)
    return f"{uri.scheme}://{uri.netloc}{uri.path.removesuffix('oauth2callback').rstrip('/')}/"


def require_admin(who: Caller, page: str) -> None:
    """Stop the page unless `who` is an admin (the navigation hides admin pages already; this refuses them when
    opened some other way)."""
    if not who.admin:
        from app.ui.resources import audit

        audit().record(who, f"open the {page} page", "refused")
        st.error(f"The {page} page is for administrators only.", icon=":material/block:")
        st.stop()


def current() -> Caller:
    """The caller of the page being drawn (main.py has made sure someone is signed in, or open mode)."""
    from app.settings import get_settings

    who = caller(get_settings())
    if who is None:  # signed out meanwhile: main.py shows the sign-in page on the next run
        st.stop()
    return who
