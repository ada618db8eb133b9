"""Who is using this browser session: the signed-in user as a `Caller` (groups from their ID token, admin when
they are in the admin group), or everyone in open mode (no provider configured).

Streamlit's own `st.login()` does the OIDC login (Authlib) and keeps the identity in a signed cookie; `kb ui`
writes the provider settings as Streamlit's `[auth]` secrets. Groups come from the token only: nothing a person
can change in the page widens what they see.
"""

from __future__ import annotations

import httpx
import streamlit as st

from app.identity import OPEN, Caller, caller_from_claims
from app.settings import Settings


def signed_in() -> bool:
    """Whether this browser session has a login (False when Streamlit has no `[auth]` configured at all)."""
    return bool(st.user.get("is_logged_in", False))


def caller(s: Settings) -> Caller | None:
    """The caller of this session: OPEN in open mode, the signed-in user with sign-in, None before login."""
    if not s.auth.configured:
        return OPEN
    if not signed_in():
        return None
    return caller_from_claims(st.user.to_dict(), s.auth.groups_claim, s.auth.admin_group, via="app")


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
