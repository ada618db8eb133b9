"""Bearer tokens from the sign-in provider, for the API: who is calling, from a token the provider issued.

- A JWT (an ID token, or an access token issued as a JWT) is verified with PyJWT against the provider's JWKS:
  signature, issuer (the discovery document's `issuer`), audience (the client id) and expiry. The token's `alg`
  must be one its key can have (`key_algorithms`: RS*/PS* for an RSA key, the curve's ES* for an EC key, EdDSA for
  an OKP key; never a symmetric one), so no token chooses how it is checked. Keys are cached; a token signed with a
  key the cache does not hold (an unknown `kid`, or no `kid` and no cached key fits) makes the keys be fetched
  again, at most once per `refetch_after_s`: that is how a key rotation is followed without letting forged tokens
  make us hammer the provider.
- Any other token is opaque. With the provider's introspection endpoint (RFC 7662, `introspection_endpoint` in its
  discovery document) and a client secret, it is introspected with this client's id and secret, and refused unless
  active and issued for this client (`aud`, else `client_id`, holds the client id); the claims are the
  introspection's (and userinfo's when those lack the groups claim). Without either, userinfo is the check (which
  cannot tell for whom the token was issued: docs/SECURITY.md). Answers are cached by the token's SHA-256: accepted
  for `userinfo_ttl_s` (never past the token's `exp`), refused for `rejected_ttl_s`, each cache bounded to
  `cache_size` tokens, so a token sent again costs no call to the provider.
- A circuit breaker: when the provider cannot be reached (discovery, keys, userinfo, introspection), every request
  in the next `backoff_s` (doubling with each failure, up to `backoff_max_s`) fails at once with not_ready, saying
  why and when it is tried again, instead of each waiting `timeout_s` for the same failure.

Groups come from the configured claim (`app.identity.caller_from_claims`). Every failure is `KbError`:
unauthorized (401) for a token that is not good, whatever is wrong with it; not_ready (503) when the provider
cannot be reached.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from .errors import KbError
from .identity import Caller, caller_from_claims

log = logging.getLogger(__name__)

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
ASYMMETRIC = RSA_ALGORITHMS | {"ES256", "ES384", "ES512", "EdDSA"}
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


def key_algorithms(key: jwt.PyJWK) -> frozenset[str]:
    """The algorithms a token verified with `key` may name: those of the key's type (an EC key's curve has one).
    A token naming another (ES256 against an RSA key, HS256 against any) is not checked with this key at all."""
    if key.key_type == "RSA":
        return RSA_ALGORITHMS
    if key.key_type == "EC" or key.key_type == "OKP":
        return frozenset({key.algorithm_name}) & ASYMMETRIC
    return frozenset()


def _unauthorized(why: str) -> KbError:
    return KbError("unauthorized", f"bearer token refused: {why}", headers={"WWW-Authenticate": _CHALLENGE})


class TtlCache:
    """At most `capacity` entries, each until its own expiry; the oldest go first when full. Thread-safe."""

    def __init__(self, capacity: int, clock: Callable[[], float]):
        self.capacity, self._clock = capacity, clock
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            if found[0] <= self._clock():
                del self._items[key]
                return None
            return found[1]

    def put(self, key: str, value: Any, ttl_s: float) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (self._clock() + ttl_s, value)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class OidcVerifier:
    """Turns a bearer token of the provider at `issuer_url` into a `Caller` (see the module docstring)."""

    def __init__(self, issuer_url: str, client_id: str, groups_claim: str = "groups", admin_group: str = "kb-admin",
                 refetch_after_s: float = 30.0, userinfo_ttl_s: float = 60.0, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, client_secret: str | None = None,
                 rejected_ttl_s: float = 60.0, cache_size: int = 10_000, backoff_s: float = 2.0,
                 backoff_max_s: float = 60.0):
        self.issuer_url = issuer_url.rstrip("/")
        self.client_id, self.groups_claim, self.admin_group = client_id, groups_claim, admin_group
        self.client_secret = client_secret
        self.refetch_after_s, self.userinfo_ttl_s, self.timeout_s = refetch_after_s, userinfo_ttl_s, timeout_s
        self.rejected_ttl_s, self.backoff_s, self.backoff_max_s = rejected_ttl_s, backoff_s, backoff_max_s
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._jwks: jwt.PyJWKClient | None = None
        self._fetched_at = -float("inf")
        self._cached: list[jwt.PyJWK] = []
        self._accepted = TtlCache(cache_size, clock)  # sha256(token) → claims
        self._rejected = TtlCache(cache_size, clock)  # sha256(token) → why
        self._failures = 0
        self._down_until = -float("inf")
        self._down_why = ""

    # ---- the provider, behind a circuit breaker -------------------------------------------------------------
    @property
    def discovery_url(self) -> str:
        return f"{self.issuer_url}/.well-known/openid-configuration"

    def _check_up(self) -> None:
        """KbError not_ready at once while the breaker is open (the provider failed less than a backoff ago)."""
        left = self._down_until - self._clock()
        if left > 0:
            raise KbError("not_ready", f"the sign-in provider cannot be reached ({self._down_why}); tried again in "
                                       f"{left:.0f} s", headers={"Retry-After": str(math.ceil(left))})

    def _went_down(self, where: str, exc: BaseException | str) -> KbError:
        """Open the breaker for the next backoff (doubling with each failure in a row); the error to raise."""
        self._failures += 1
        backoff = min(self.backoff_max_s, self.backoff_s * 2 ** (self._failures - 1))
        self._down_until = self._clock() + backoff
        detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {str(exc)[:200]}"
        self._down_why = f"{where}: {detail}"
        log.warning("sign-in provider unreachable (%s); requests fail at once for %.0f s", self._down_why, backoff)
        return KbError("not_ready", f"the sign-in provider cannot be reached at {self._down_why}; retry in "
                                    f"{backoff:.0f} s", headers={"Retry-After": str(math.ceil(backoff))})

    def _went_up(self) -> None:
        self._failures, self._down_until = 0, -float("inf")

    def _call(self, method: str, url: str, **kw) -> httpx.Response:
        """One request to the provider; a transport failure or a 5xx opens the breaker (KbError not_ready)."""
        self._check_up()
        try:
            r = httpx.request(method, url, timeout=self.timeout_s, **kw)
        except httpx.HTTPError as exc:
            raise self._went_down(url, exc) from exc
        if r.status_code >= 500:
            raise self._went_down(url, f"answered {r.status_code}")
        self._went_up()
        return r

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched once; KbError not_ready while it cannot be read)."""
        with self._lock:  # others wait for the one fetch, then meet the breaker it opened, if it failed
            if self._metadata is None:
                r = self._call("GET", self.discovery_url, follow_redirects=True)
                try:
                    r.raise_for_status()
                    meta = r.json()
                    if not isinstance(meta, dict) or not meta.get("issuer") or not meta.get("jwks_uri"):
                        raise ValueError("the discovery document names no issuer or jwks_uri")
                except (httpx.HTTPError, ValueError) as exc:
                    raise self._went_down(self.discovery_url, exc) from exc
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
                self._check_up()
                try:
                    self._cached = self._jwks.get_signing_keys()
                except jwt.PyJWKClientConnectionError as exc:
                    raise self._went_down(self._metadata["jwks_uri"], exc) from exc
                except jwt.PyJWKClientError as exc:
                    raise KbError("not_ready", f"the sign-in provider's keys cannot be read ({exc}); retry shortly",
                                  headers={"Retry-After": "5"}) from exc
                self._fetched_at = now
            return list(self._cached)

    # ---- tokens ------------------------------------------------------------------------------------------------
    def caller(self, token: str) -> Caller:
        """The caller a bearer token stands for; KbError unauthorized when it is not a good token."""
        header = jwt_header(token)
        claims = self._jwt_claims(token, header) if header is not None else self._opaque_claims(token)
        return caller_from_claims(claims, self.groups_claim, self.admin_group, via="oidc")

    def _jwt_claims(self, token: str, header: dict[str, Any]) -> dict[str, Any]:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASYMMETRIC:
            raise _unauthorized(f"signing algorithm {alg!r} is not accepted (only the provider's public keys)")
        kid = header.get("kid")
        for refetch in (False, True):
            keys = self._keys(refetch)
            named = [k for k in keys if k.key_id == kid] if kid else keys
            if kid and not named:
                continue  # a key we have not seen: the provider rotated its keys, fetch them again
            for key in named:
                if alg not in key_algorithms(key):
                    continue  # a token does not choose how it is checked
                try:
                    return jwt.decode(token, key.key, algorithms=[alg], audience=self.client_id,
                                      issuer=self.metadata()["issuer"],
                                      options={"require": ["exp", "iss", "aud", "sub"]})
                except (jwt.InvalidSignatureError, jwt.DecodeError, jwt.InvalidKeyError, TypeError, ValueError):
                    continue  # another key of the set may have signed it; a mangled token fits none
                except jwt.ExpiredSignatureError as exc:
                    raise _unauthorized("it has expired; sign in again") from exc
                except jwt.InvalidAudienceError as exc:
                    raise _unauthorized(f"it was not issued for this application (audience must be "
                                        f"{self.client_id!r})") from exc
                except jwt.InvalidIssuerError as exc:
                    raise _unauthorized(f"it was not issued by {self.metadata()['issuer']}") from exc
                except jwt.PyJWTError as exc:
                    raise _unauthorized(str(exc)) from exc
            if kid and named:
                break  # the key it names exists and did not verify it: a forged or damaged token
        raise _unauthorized(f"its signature ({alg}) does not match the provider's keys")

    def _opaque_claims(self, token: str) -> dict[str, Any]:
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        accepted = self._accepted.get(key)
        if accepted is not None:
            return accepted
        refused = self._rejected.get(key)
        if refused is not None:
            raise _unauthorized(refused)
        meta = self.metadata()
        try:
            if meta.get("introspection_endpoint") and self.client_secret:
                claims = self._introspected(token, meta["introspection_endpoint"], meta.get("userinfo_endpoint"))
            else:
                claims = self._userinfo(token, meta.get("userinfo_endpoint"))
        except KbError as exc:
            if exc.kind == "unauthorized":
                self._rejected.put(key, exc.message.removeprefix("bearer token refused: "), self.rejected_ttl_s)
            raise
        ttl = self.userinfo_ttl_s
        if isinstance(claims.get("exp"), (int, float)):  # introspection says when it expires
            ttl = min(ttl, claims["exp"] - time.time())
        if ttl > 0:
            self._accepted.put(key, claims, ttl)
        return claims

    def _introspected(self, token: str, endpoint: str, userinfo: str | None) -> dict[str, Any]:
        """RFC 7662: the provider says whether the token is active and for whom it was issued."""
        r = self._call("POST", endpoint, data={"token": token, "token_type_hint": "access_token"},
                       auth=(self.client_id, self.client_secret or ""))
        if r.status_code in (401, 403):  # our credentials, not the caller's token: do not blame (or cache) it
            raise KbError("not_ready", f"the sign-in provider refused this API's client credentials at {endpoint} "
                                       f"({r.status_code}); check KB_AUTH_CLIENT_ID and KB_AUTH_CLIENT_SECRET")
        try:
            r.raise_for_status()
            answer = r.json()
            if not isinstance(answer, dict):
                raise ValueError("not a JSON object")
        except (httpx.HTTPError, ValueError) as exc:
            raise KbError("not_ready", f"the provider's introspection endpoint answered {r.status_code}: "
                                       f"{r.text[:200]!r}") from exc
        if answer.get("active") is not True:
            raise _unauthorized("the provider says it is not active (expired, revoked or never issued); sign in "
                                "again")
        audience = answer.get("aud", answer.get("client_id"))
        audience = [audience] if isinstance(audience, str) else audience
        if not isinstance(audience, list) or self.client_id not in audience:
            raise _unauthorized(f"it was not issued for this application (audience must be {self.client_id!r})")
        if self.groups_claim not in answer and userinfo:  # some providers keep custom claims out of introspection
            answer = {**self._userinfo(token, userinfo), **answer}
        return answer

    def _userinfo(self, token: str, endpoint: str | None) -> dict[str, Any]:
        if not endpoint:
            raise _unauthorized("not a JWT, and the provider has no userinfo endpoint to check it")
        r = self._call("GET", endpoint, headers={"Authorization": f"Bearer {token}"})
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
        return claims
