"""Bearer tokens from the sign-in provider, for the API: who is calling, from a token the provider issued.

- A JWT (an ID token, or an access token issued as a JWT) is verified with PyJWT against the provider's JWKS:
  signature (asymmetric algorithms only), issuer (the discovery document's `issuer`), audience (the client id) and
  expiry. Keys are cached; a token signed with a key the cache does not hold (an unknown `kid`, or no `kid` and no
  cached key fits) makes the keys be fetched again, at most once per `refetch_after_s`: that is how a key
  rotation is followed without letting forged tokens make us hammer the provider.
- Any other token is opaque: it is checked at the provider's userinfo endpoint, and the answer cached briefly.

Groups come from the configured claim (`app.identity.caller_from_claims`). Every failure is `KbError`:
unauthorized (401) for a token that is not good, not_ready (503) when the provider cannot be reached.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from .errors import KbError
from .identity import Caller, caller_from_claims

log = logging.getLogger(__name__)

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_CHALLENGE = 'Bearer error="invalid_token"'


def jwt_header(token: str) -> dict[str, Any] | None:
    """The header of a token shaped like a JWT (three dot-separated parts, the first a JSON object naming its
    `alg`), else None: an opaque token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, TypeError):
        return None
    return header if isinstance(header, dict) and "alg" in header else None


def _unauthorized(why: str) -> KbError:
    return KbError("unauthorized", f"bearer token refused: {why}", headers={"WWW-Authenticate": _CHALLENGE})


class OidcVerifier:
    """Turns a bearer token of the provider at `issuer_url` into a `Caller` (see the module docstring)."""

    def __init__(self, issuer_url: str, client_id: str, groups_claim: str = "groups", admin_group: str = "kb-admin",
                 refetch_after_s: float = 30.0, userinfo_ttl_s: float = 60.0, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.issuer_url = issuer_url.rstrip("/")
        self.client_id, self.groups_claim, self.admin_group = client_id, groups_claim, admin_group
        self.refetch_after_s, self.userinfo_ttl_s, self.timeout_s = refetch_after_s, userinfo_ttl_s, timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._jwks: jwt.PyJWKClient | None = None
        self._fetched_at = -float("inf")
        self._cached: list[jwt.PyJWK] = []
        self._userinfo: dict[str, tuple[float, dict[str, Any]]] = {}

    # ---- the provider ------------------------------------------------------------------------------------------
    @property
    def discovery_url(self) -> str:
        return f"{self.issuer_url}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched once; KbError not_ready while it cannot be read)."""
        with self._lock:
            if self._metadata is None:
                try:
                    r = httpx.get(self.discovery_url, timeout=self.timeout_s, follow_redirects=True)
                    r.raise_for_status()
                    meta = r.json()
                    if not isinstance(meta, dict) or not meta.get("issuer") or not meta.get("jwks_uri"):
                        raise ValueError("the discovery document names no issuer or jwks_uri")
                except (httpx.HTTPError, ValueError) as exc:
                    raise KbError("not_ready", f"the sign-in provider cannot be reached at {self.discovery_url} "
                                               f"({type(exc).__name__}: {str(exc)[:200]}); retry shortly",
                                  headers={"Retry-After": "5"}) from exc
                self._metadata = meta
                # our own cache below decides when keys are fetched again
                self._jwks = jwt.PyJWKClient(meta["jwks_uri"], cache_jwk_set=False, cache_keys=False,
                                             timeout=int(self.timeout_s))
            return self._metadata

    def _keys(self, refetch: bool) -> list[jwt.PyJWK]:
        """The provider's signing keys, from the cache unless `refetch` (then at most once per refetch_after_s)."""
        self.metadata()
        with self._lock:
            now = self._clock()
            if refetch and now - self._fetched_at < self.refetch_after_s:
                return list(self._cached)
            if refetch or self._fetched_at == -float("inf"):
                try:
                    self._cached = self._jwks.get_signing_keys()
                except jwt.PyJWKClientError as exc:
                    raise KbError("not_ready", f"the sign-in provider's keys cannot be read ({exc}); retry shortly",
                                  headers={"Retry-After": "5"}) from exc
                self._fetched_at = now
            return list(self._cached)

    # ---- tokens ------------------------------------------------------------------------------------------------
    def caller(self, token: str) -> Caller:
        """The caller a bearer token stands for; KbError unauthorized when it is not a good token."""
        header = jwt_header(token)
        claims = self._jwt_claims(token, header) if header is not None else self._userinfo_claims(token)
        return caller_from_claims(claims, self.groups_claim, self.admin_group, via="oidc")

    def _jwt_claims(self, token: str, header: dict[str, Any]) -> dict[str, Any]:
        alg = header.get("alg")
        if alg not in ASYMMETRIC:
            raise _unauthorized(f"signing algorithm {alg!r} is not accepted (only the provider's public keys)")
        kid = header.get("kid")
        for refetch in (False, True):
            keys = self._keys(refetch)
            matching = [k for k in keys if k.key_id == kid] if kid else keys
            if kid and not matching:
                continue  # a key we have not seen: the provider rotated its keys, fetch them again
            for key in matching:
                try:
                    return jwt.decode(token, key.key, algorithms=[alg], audience=self.client_id,
                                      issuer=self.metadata()["issuer"],
                                      options={"require": ["exp", "iss", "aud", "sub"]})
                except (jwt.InvalidSignatureError, jwt.DecodeError):
                    continue  # another key of the set may have signed it
                except jwt.ExpiredSignatureError as exc:
                    raise _unauthorized("it has expired; sign in again") from exc
                except jwt.InvalidAudienceError as exc:
                    raise _unauthorized(f"it was not issued for this application (audience must be "
                                        f"{self.client_id!r})") from exc
                except jwt.InvalidIssuerError as exc:
                    raise _unauthorized(f"it was not issued by {self.metadata()['issuer']}") from exc
                except jwt.InvalidTokenError as exc:
                    raise _unauthorized(str(exc)) from exc
            if kid and matching:
                break  # the key it names exists and did not verify it: a forged or damaged token
        raise _unauthorized("its signature does not match the provider's keys")

    def _userinfo_claims(self, token: str) -> dict[str, Any]:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        with self._lock:
            cached = self._userinfo.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
        endpoint = self.metadata().get("userinfo_endpoint")
        if not endpoint:
            raise _unauthorized("not a JWT, and the provider has no userinfo endpoint to check it")
        try:
            r = httpx.get(endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise KbError("not_ready", f"the sign-in provider cannot be reached at {endpoint} ({exc})",
                          headers={"Retry-After": "5"}) from exc
        if r.status_code in (400, 401, 403):
            raise _unauthorized("the provider does not accept it (userinfo answered "
                                f"{r.status_code}); sign in again")
        try:
            r.raise_for_status()
            claims = r.json()
            if not isinstance(claims, dict) or not claims.get("sub"):
                raise ValueError("no sub")
        except (httpx.HTTPError, ValueError) as exc:
            raise KbError("not_ready", f"the provider's userinfo endpoint answered {r.status_code}: "
                                       f"{r.text[:200]!r}") from exc
        with self._lock:
            self._userinfo = {k: v for k, v in self._userinfo.items() if v[0] > now}  # forget the stale ones
            self._userinfo[key] = (now + self.userinfo_ttl_s, claims)
        return claims
