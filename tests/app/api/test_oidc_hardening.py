"""Security review, issue 32, on bearer tokens (a real OIDC provider process throughout): every malformed or
mismatched token is a 401, never a 500 (finding 11); opaque tokens are introspected (RFC 7662) with the audience
checked, answers are cached both ways, and an unreachable provider fails fast behind a circuit breaker (13)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import KbError
from app.oidc import OidcVerifier
from tests.app.api.conftest import live_server, make_service
from tests.oidc_provider import CLIENT_ID, Provider, free_port


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def part(value) -> str:
    return b64(json.dumps(value).encode())


def refused(verifier: OidcVerifier, token: str) -> KbError:
    with pytest.raises(KbError) as err:
        verifier.caller(token)
    assert err.value.kind == "unauthorized", err.value.message
    return err.value


# ---- 11: malformed and mismatched tokens are 401 -------------------------------------------------------------------
@pytest.fixture(scope="module")
def verifier(oidc_provider) -> OidcVerifier:
    v = OidcVerifier(oidc_provider.issuer, CLIENT_ID)
    assert v.caller(oidc_provider.id_token("alice")).who == "alice@example.com"  # keys fetched, discovery read
    return v


@pytest.fixture(scope="module")
def real_claims(oidc_provider) -> dict:
    return jwt.decode(oidc_provider.id_token("hana"), options={"verify_signature": False})


FOREIGN = {  # keys the provider never had, one of each type
    "ES256": ec.generate_private_key(ec.SECP256R1()),
    "ES384": ec.generate_private_key(ec.SECP384R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "PS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


@pytest.mark.parametrize("alg", sorted(FOREIGN))
def test_a_token_signed_with_another_key_type_is_401(verifier, real_claims, alg):
    """The review's cases: ES256 against the provider's RSA key was a TypeError (500), EdDSA an InvalidKeyError."""
    token = jwt.encode(real_claims, FOREIGN[alg], algorithm=alg)
    assert "signature" in refused(verifier, token).message
    with_kid = jwt.encode(real_claims, FOREIGN[alg], algorithm=alg, headers={"kid": "made-up"})
    refused(verifier, with_kid)


def test_the_provider_public_key_as_an_hmac_secret_is_401(verifier, oidc_provider, real_claims):
    """Algorithm confusion: HS256 'signed' with the provider's public key, which anyone can read."""
    jwks = httpx.get(httpx.get(oidc_provider.issuer + "/.well-known/openid-configuration").json()["jwks_uri"]).json()
    public = jwt.PyJWK(jwks["keys"][0]).key.public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(real_claims)}"
    sig = b64(hmac.new(public, forged.encode(), hashlib.sha256).digest())
    assert "HS256" in refused(verifier, f"{forged}.{sig}").message


HEADER_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.lists(st.integers()),
                          st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
ALGS = st.sampled_from(["RS256", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA", "HS256", "none", "ES256K",
                        "rs256", ""]) | HEADER_VALUES
PAYLOADS = st.one_of(st.just("REAL"), HEADER_VALUES, st.dictionaries(
    st.sampled_from(["sub", "iss", "aud", "exp", "iat", "nbf", "groups", "email"]), HEADER_VALUES, max_size=6))


@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(alg=ALGS, kid=HEADER_VALUES, payload=PAYLOADS, signature=st.binary(max_size=300),
       mangle=st.sampled_from(["", "pad", "dot", "b64"]), extra=st.dictionaries(
           st.sampled_from(["crit", "jku", "x5u", "jwk", "b64", "typ"]), HEADER_VALUES, max_size=2))
def test_any_malformed_token_is_401_never_a_crash(verifier, real_claims, oidc_provider, alg, kid, payload, signature,
                                                  mangle, extra):
    header = {"alg": alg, **extra} | ({"kid": kid} if kid is not None else {})
    claims = real_claims if payload == "REAL" else payload
    token = f"{part(header)}.{part(claims)}.{b64(signature)}"
    if mangle == "pad":
        token += "=="
    elif mangle == "dot":
        token = token.replace(".", "..", 1)
    elif mangle == "b64":
        token = token[:5] + "!" + token[6:]
    refused(verifier, token)


def test_malformed_tokens_are_401_over_http(oidc_provider, embedder, tiny_reranker, tmp_path, real_claims):
    served = make_service(tmp_path, embedder, tiny_reranker,
                          auth={"provider_url": oidc_provider.issuer, "client_id": CLIENT_ID})
    with live_server(served.app()) as url:
        for token in (jwt.encode(real_claims, FOREIGN["ES256"], algorithm="ES256"),
                      jwt.encode(real_claims, FOREIGN["EdDSA"], algorithm="EdDSA"),
                      f"{part({'alg': 'RS256', 'kid': ['x']})}.{part([1])}.AAAA", "a.b.c", "...."):
            r = httpx.post(url + "/search", json={"query": "vpn"}, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401 and r.json()["error_type"] == "unauthorized", (token, r.text)


# ---- 13: opaque tokens introspected, cached both ways; a circuit breaker --------------------------------------------
@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    """The provider with an RFC 7662 introspection endpoint (tests/oidc_provider.py `serve`)."""
    provider = Provider(free_port(), tmp_path_factory.mktemp("idp-introspect") / "idp.log", introspection=True).start()
    yield provider
    provider.stop()


def test_an_opaque_token_is_introspected_for_this_client_only(idp):
    v = OidcVerifier(idp.issuer, CLIENT_ID, client_secret="secret")
    access = idp.tokens("hana")["access_token"]
    before = idp.introspections
    assert v.caller(access).groups == ("hr",)
    assert v.caller(access).groups == ("hr",)  # cached: one introspection for both
    assert idp.introspections == before + 1
    theirs = idp.tokens("hana", client_id="another-app")["access_token"]  # a good token, issued to another app
    assert "not issued for this application" in refused(v, theirs).message


def test_a_refused_token_is_remembered(idp):
    v = OidcVerifier(idp.issuer, CLIENT_ID, client_secret="secret")
    before = idp.introspections
    for _ in range(5):
        assert "not active" in refused(v, "not-a-token-the-provider-issued").message
    assert idp.introspections == before + 1  # one call to the provider, then the refusal from the cache


def test_without_a_client_secret_userinfo_is_the_check(idp):
    v = OidcVerifier(idp.issuer, CLIENT_ID)
    before = idp.introspections
    assert v.caller(idp.tokens("hana")["access_token"]).groups == ("hr",)
    assert "userinfo" in refused(v, "unknown-opaque-token").message
    assert idp.introspections == before


def test_opaque_tokens_over_http_are_introspected(idp, embedder, tiny_reranker, tmp_path):
    served = make_service(tmp_path, embedder, tiny_reranker,
                          auth={"provider_url": idp.issuer, "client_id": CLIENT_ID, "client_secret": "secret"})
    with live_server(served.app()) as url:
        def ask(token):
            return httpx.post(url + "/search", json={"query": "salary band B3", "threshold": 0.0},
                              headers={"Authorization": f"Bearer {token}"}, timeout=60)

        mine = ask(idp.tokens("hana")["access_token"])
        assert mine.status_code == 200 and any("Band B3" in r["text"] for r in mine.json()["results"])
        assert ask(idp.tokens("hana", client_id="another-app")["access_token"]).status_code == 401


class CountingListener:
    """A port where something listens and hangs up at once: a provider that is down, that counts the attempts."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1  # before the hang-up the client's failure follows from
            conn.close()

    def close(self):
        self.sock.close()


def test_an_unreachable_provider_fails_fast_until_the_backoff_is_over():
    down = CountingListener()
    now = [1000.0]
    v = OidcVerifier(f"http://127.0.0.1:{down.port}", CLIENT_ID, clock=lambda: now[0], backoff_s=2.0)
    try:
        with pytest.raises(KbError) as first:
            v.caller("a.b.c")
        assert first.value.kind == "not_ready" and down.accepted == 1 and str(down.port) in first.value.message
        for token in ("a.b.c", "opaque", "x.y.z"):  # within the backoff: no attempt, the reason given at once
            with pytest.raises(KbError) as fast:
                v.caller(token)
            assert fast.value.kind == "not_ready" and "tried again in 2 s" in fast.value.message
            assert fast.value.headers["Retry-After"] == "2"
        assert down.accepted == 1
        now[0] += 2.5  # the backoff is over: one more attempt, and the next backoff is twice as long
        with pytest.raises(KbError) as second:
            v.caller("a.b.c")
        assert down.accepted == 2 and "retry in 4 s" in second.value.message
    finally:
        down.close()
