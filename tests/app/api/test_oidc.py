"""The API with a sign-in provider: bearer tokens issued by a real OIDC provider process (`oidc-provider-mock`),
verified against its JWKS (signature, issuer, audience, expiry), opaque tokens at its userinfo endpoint, groups
from the token, admin routes for the admin group only, API keys still working beside tokens."""

from __future__ import annotations

import base64
import json
import time

import pytest
from fastapi.testclient import TestClient

from app.errors import KbError
from app.oidc import OidcVerifier
from tests.app.api.conftest import make_service
from tests.oidc_provider import CLIENT_ID, Provider, free_port

NEW_DOC = b"# Parking\n\nStaff park in garage P2.\n"


@pytest.fixture(scope="module")
def provider(oidc_provider):
    return oidc_provider


@pytest.fixture(scope="module")
def api(tmp_path_factory, embedder, tiny_reranker, provider):
    served = make_service(tmp_path_factory.mktemp("oidc"), embedder, tiny_reranker, api_keys={"it-key": ["it"]},
                          auth={"provider_url": provider.issuer, "client_id": CLIENT_ID})
    with TestClient(served.app()) as c:
        yield served, c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def texts(answer: dict) -> str:
    return " ".join(r["text"] for r in answer["results"] + answer.get("below_threshold", []))


def salary(c, headers) -> dict:
    r = c.post("/search", json={"query": "salary band B3", "threshold": 0.0, "top_n": 20, "include_hidden": True},
               headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_no_token_is_401_with_a_bearer_challenge(api):
    _, c = api
    r = c.post("/search", json={"query": "vpn"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error_type"] == "unauthorized" and "results" not in r.json()


def test_groups_come_from_the_token(api, provider):
    _, c = api
    assert "Band B3" not in texts(salary(c, bearer(provider.id_token("alice"))))  # no groups: public only
    assert "Band B3" in texts(salary(c, bearer(provider.id_token("hana"))))  # hr
    assert "Band B3" in texts(salary(c, bearer(provider.id_token("root"))))  # the admin group sees everything


def test_a_tampered_token_is_401(api, provider):
    _, c = api
    token = provider.id_token("alice")
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["groups"] = ["hr"]  # alice makes herself a member of hr
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for bad in (f"{head}.{forged}.{sig}", f"{head}.{payload}.{sig[:-4]}AAAA"):
        r = c.post("/search", json={"query": "salary band B3"}, headers=bearer(bad))
        assert r.status_code == 401 and "signature" in r.json()["error"], r.text


def test_an_opaque_access_token_is_checked_at_userinfo(api, provider):
    _, c = api
    access = provider.tokens("hana")["access_token"]
    assert access.count(".") != 2  # this provider's access tokens are not JWTs
    assert "Band B3" in texts(salary(c, bearer(access)))
    r = c.post("/search", json={"query": "vpn"}, headers=bearer("not-a-token-the-provider-issued"))
    assert r.status_code == 401 and "userinfo" in r.json()["error"]


def test_admin_routes_need_the_admin_group_and_refusals_are_audited(api, provider):
    served, c = api
    files = [("files", ("parking.md", NEW_DOC, "text/markdown"))]
    alice = bearer(provider.id_token("alice"))
    r = c.post("/ingest", files=files, headers=alice)
    assert r.status_code == 403 and "kb-admin" in r.json()["error"]
    assert c.delete("/documents/whatever", headers=alice).status_code == 403
    assert not (served.settings.upload_dir / "public" / "parking.md").exists()
    r = c.post("/ingest", files=files, headers=bearer(provider.id_token("root")))
    assert r.status_code == 200 and r.json()["added"] == ["parking.md"]
    from app.components import audit_log

    entries = list(audit_log(served.settings).entries())
    refused = [e for e in entries if e["outcome"] == "refused"]
    assert {(e["who"], e["action"]) for e in refused} >= {("alice@example.com", "POST /ingest"),
                                                          ("alice@example.com", "DELETE /documents/whatever")}
    done = [e for e in entries if e["outcome"] == "done"]
    assert done[-1]["who"] == "root@example.com" and done[-1]["action"] == "upload" and done[-1]["via"] == "oidc"
    assert all("Staff park" not in json.dumps(e) for e in entries)  # no document text in the log


def test_api_keys_keep_working_beside_tokens(api):
    _, c = api
    r = c.post("/search", json={"query": "firewall VPN gateway", "threshold": 0.0}, headers={"X-API-Key": "it-key"})
    assert r.status_code == 200
    assert c.post("/search", json={"query": "vpn"}, headers={"X-API-Key": "nope"}).status_code == 401


# ---- the token checks, one by one, on the verifier the API uses --------------------------------------------------
def refused(verifier: OidcVerifier, token: str, needle: str) -> None:
    with pytest.raises(KbError) as err:
        verifier.caller(token)
    assert err.value.kind == "unauthorized" and needle in err.value.message, err.value.message


@pytest.mark.slow
def test_expired_token(tmp_path):
    short = Provider(free_port(), tmp_path / "idp.log", token_max_age=1).start()
    try:
        token = short.id_token("alice")
        time.sleep(2.5)
        refused(OidcVerifier(short.issuer, CLIENT_ID), token, "expired")
    finally:
        short.stop()


def test_wrong_issuer_wrong_audience_broken_signature(provider):
    v = OidcVerifier(provider.issuer, CLIENT_ID)
    assert v.caller(provider.id_token("alice")).who == "alice@example.com"
    # the same provider reached by another name issues tokens of another issuer
    refused(v, provider.id_token("alice", base=f"http://127.0.0.1:{provider.port}"), "not issued by")
    refused(v, provider.id_token("alice", client_id="another-app"), "audience")
    head, payload, sig = provider.id_token("alice").split(".")
    refused(v, f"{head}.{payload}.{sig[::-1]}", "signature")


@pytest.mark.slow
def test_a_rotated_key_is_fetched_once_and_the_old_one_no_longer_verifies(tmp_path):
    port = free_port()
    idp = Provider(port, tmp_path / "idp.log").start()
    v = OidcVerifier(idp.issuer, CLIENT_ID, refetch_after_s=0)
    try:
        old = idp.id_token("hana")
        assert v.caller(old).groups == ("hr",)
        idp.stop()
        idp.start()  # same issuer, a new signing key (this provider makes one at every start)
        new = idp.id_token("hana")
        assert v.caller(new).groups == ("hr",)  # unknown to the cached keys: fetched again, then verified
        refused(v, old, "signature")
    finally:
        idp.stop()


def test_missing_groups_claim_is_no_groups_and_a_string_claim_is_split(provider):
    v = OidcVerifier(provider.issuer, CLIENT_ID)
    provider.set_claims("bob", {"email": "bob@example.com"})
    provider.set_claims("carol", {"email": "carol@example.com", "groups": "hr it"})
    provider.set_claims("dave", {"email": "dave@example.com", "groups": "kb-admin,finance"})
    bob, carol, dave = (v.caller(provider.id_token(s)) for s in ("bob", "carol", "dave"))
    assert bob.groups == () and not bob.admin
    assert carol.groups == ("hr", "it") and not carol.admin
    assert dave.admin and dave.groups is None  # admins see every document


def test_an_unreachable_provider_is_503_not_open(embedder, tiny_reranker, tmp_path):
    dead = f"http://localhost:{free_port()}"
    served = make_service(tmp_path, embedder, tiny_reranker, auth={"provider_url": dead, "client_id": CLIENT_ID})
    with TestClient(served.app()) as c:
        assert c.post("/search", json={"query": "vpn"}).status_code == 401  # no token: never open
        r = c.post("/search", json={"query": "vpn"}, headers=bearer("a.b.c"))
        assert r.status_code == 503 and dead in r.json()["error"]
