"""The app asks the provider again for a signed-in person's groups (issue 32, finding 8): the login cookie lasts 30
days, so without this someone removed from kb-admin would stay admin in the app. A real OIDC provider process
(tests/oidc_provider.py) issues the tokens; the app under AppTest holds them as `st.login()` would (`st.user`
with the ID token's claims and, with `expose_tokens`, the access token)."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest

from tests.oidc_provider import CLIENT_ID


@pytest.fixture
def signed_in_app(app_test, oidc_provider, monkeypatch):
    """A function: start the app with sign-in at the test provider and `recheck_s`, as a new user of `groups`;
    returns (AppTest after the first signed-in run, the user's sub)."""

    def start(recheck_s: float, groups: list[str]):
        for name, value in {"KB_AUTH_PROVIDER_URL": oidc_provider.issuer, "KB_AUTH_CLIENT_ID": CLIENT_ID,
                            "KB_AUTH_CLIENT_SECRET": "s3cret", "KB_AUTH_COOKIE_SECRET": "c" * 64,
                            "KB_AUTH_RECHECK_S": str(recheck_s)}.items():
            monkeypatch.setenv(name, value)
        sub = f"u-{uuid.uuid4().hex[:8]}"
        oidc_provider.set_claims(sub, {"email": f"{sub}@example.com", "name": sub, "groups": groups})
        tokens = oidc_provider.tokens(sub)
        claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
        at = app_test()
        at.user = {"is_logged_in": True, **claims, "tokens": {"access": tokens["access_token"]}}
        return at.run(), sub

    return start


def is_admin(at) -> bool:
    return any("· admin" in m.value for m in at.sidebar.markdown)


def library_open(at) -> bool:
    """Whether the Library page is in this person's navigation and opens."""
    try:
        at.switch_page("views/library.py").run()
    except ValueError:  # AppTest: "Could not find a navigation page" (a browser gets "Page not found")
        return False
    return not at.exception and any(t.value == "Library" for t in at.title)


def signed_out(at) -> bool:
    return at.user.get("is_logged_in") is False and any(b.label == "Sign in" for b in at.button)


def run_until(at, done, seconds: float = 30.0):
    """Rerun the app until `done(at)` (the observable change), for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not done(at.run()):
        assert time.monotonic() < deadline, "the change never showed"
    return at


@pytest.mark.slow
def test_someone_removed_from_the_admin_group_loses_the_admin_pages_after_the_interval(signed_in_app,
                                                                                       oidc_provider):
    at, sub = signed_in_app(0.05, ["kb-admin"])
    assert not at.exception and is_admin(at) and library_open(at)
    oidc_provider.set_claims(sub, {"email": f"{sub}@example.com", "name": sub, "groups": []})  # removed
    run_until(at, lambda at: not is_admin(at))
    assert not signed_out(at) and not library_open(at)


def test_within_the_interval_the_provider_is_not_asked_again(signed_in_app, oidc_provider):
    at, sub = signed_in_app(3600, ["kb-admin"])
    oidc_provider.set_claims(sub, {"email": f"{sub}@example.com", "name": sub, "groups": []})
    assert is_admin(at.run())  # the answer of the first page holds for an hour


def test_a_token_the_provider_no_longer_accepts_signs_the_person_out(signed_in_app, oidc_provider):
    at, sub = signed_in_app(0, [])
    assert not at.exception and not signed_out(at)
    r = httpx.post(f"{oidc_provider.issuer}/users/{sub}/revoke-tokens", timeout=10)
    assert r.status_code == 204
    assert signed_out(at.run())


@pytest.mark.slow
def test_the_id_token_expiring_asks_again_within_the_interval(signed_in_app, oidc_provider):
    at, sub = signed_in_app(3600, ["kb-admin"])
    httpx.post(f"{oidc_provider.issuer}/users/{sub}/revoke-tokens", timeout=10).raise_for_status()
    assert is_admin(at.run())  # within the interval and before expiry: the first answer holds
    at.user = {**at.user, "exp": time.time() + 1.0}  # its ID token expires in a second (after the last answer)
    run_until(at, signed_out)
