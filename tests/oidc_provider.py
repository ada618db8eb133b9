"""A real OIDC provider for tests: the `oidc-provider-mock` package as its own process on a free loopback port.

It signs real RS256 tokens (a new key every start), serves discovery, JWKS and userinfo, and shows predefined users
as buttons on its authorization form. `tokens()` walks the authorization-code flow over plain HTTP, as a browser
would, and returns the provider's real answer (ID token, opaque access token). Facts of this provider that tests
rely on: the issuer is the address it was reached at (localhost vs 127.0.0.1 are two issuers), ID tokens carry no
`kid`, any client id and secret are accepted, and `PUT /users/{sub}` replaces a user's claims.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx

USERS = {
    "alice": {"sub": "alice", "email": "alice@example.com", "name": "Alice Employee", "groups": []},
    "hana": {"sub": "hana", "email": "hana@example.com", "name": "Hana HR", "groups": ["hr"]},
    "root": {"sub": "root", "email": "root@example.com", "name": "Root Admin", "groups": ["kb-admin", "it"]},
}
CLIENT_ID = "kb-search-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Provider:
    port: int
    log: Path
    token_max_age: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> Provider:
        exe = Path(sys.executable).with_name("oidc-provider-mock")
        cmd = [str(exe), "--port", str(self.port)]
        if self.token_max_age is not None:
            cmd += ["--token-max-age", str(self.token_max_age)]
        for claims in USERS.values():
            cmd += ["--user-claims", json.dumps(claims)]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("a"), stderr=subprocess.STDOUT,
                                     env={**os.environ, "NO_COLOR": "1"}, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"oidc-provider-mock exited:\n{self.log.read_text()}")
            try:
                if httpx.get(self.issuer + "/.well-known/openid-configuration", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"oidc-provider-mock did not start on {self.port}:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)

    def set_claims(self, sub: str, claims: dict) -> None:
        """Replace a user's claims (from their next login)."""
        r = httpx.put(f"{self.issuer}/users/{sub}", json={"sub": sub, **claims}, timeout=10)
        assert r.status_code == 204, r.text

    def tokens(self, sub: str, client_id: str = CLIENT_ID, base: str | None = None) -> dict:
        """The provider's token answer for `sub` (authorization code flow, no browser). `base`: the address it is
        reached at (another host name gives tokens of another issuer)."""
        base = base or self.issuer
        with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as c:
            params = {"response_type": "code", "client_id": client_id, "redirect_uri": "http://localhost/cb",
                      "scope": "openid email profile", "state": secrets.token_urlsafe(8),
                      "nonce": secrets.token_urlsafe(8)}
            r = c.post("/oauth2/authorize", params=params, data={"sub": sub})
            assert r.status_code == 302, (r.status_code, r.text[:300])
            code = parse_qs(urlparse(r.headers["location"]).query)["code"][0]
            r = c.post("/oauth2/token", data={"grant_type": "authorization_code", "code": code,
                                              "redirect_uri": params["redirect_uri"]}, auth=(client_id, "secret"))
            r.raise_for_status()
            return r.json()

    def id_token(self, sub: str, **kw) -> str:
        return self.tokens(sub, **kw)["id_token"]
