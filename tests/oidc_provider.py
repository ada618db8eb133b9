"""A real OIDC provider for tests: the `oidc-provider-mock` package as its own process on a free loopback port.

It signs real RS256 tokens (a new key every start), serves discovery, JWKS and userinfo, and shows predefined users
as buttons on its authorization form. `tokens()` walks the authorization-code flow over plain HTTP, as a browser
would, and returns the provider's real answer (ID token, opaque access token). Facts of this provider that tests
rely on: the issuer is the address it was reached at (localhost vs 127.0.0.1 are two issuers), ID tokens carry no
`kid`, any client id and secret are accepted, and `PUT /users/{sub}` replaces a user's claims.

`Provider(..., introspection=True)` runs the same provider through `serve()` below (this file as a script), which
adds what the package lacks: an RFC 7662 introspection endpoint (`POST /oauth2/introspect`, named in discovery as
`introspection_endpoint`) that needs a client's Basic credentials and answers `active`, `sub`, `aud` and
`client_id` (the client that obtained the token), `exp` and the user's claims. `introspections` counts its calls.
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
    introspection: bool = False
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> Provider:
        exe = Path(sys.executable).with_name("oidc-provider-mock")
        cmd = [str(exe), "--port", str(self.port)]
        if self.introspection:
            cmd = [sys.executable, __file__, "--port", str(self.port)]
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

    @property
    def introspections(self) -> int:
        """How many introspection requests the provider has answered (with `introspection=True`)."""
        return httpx.get(f"{self.issuer}/test/introspections", timeout=10).json()["count"]


def serve(argv: list[str]) -> None:
    """oidc-provider-mock with an introspection endpoint (see the module docstring), on 127.0.0.1; the arguments
    are the package's own `--port`, `--token-max-age` and `--user-claims`."""
    import argparse
    from datetime import timedelta

    import flask
    import uvicorn
    from oidc_provider_mock import app as provider_app
    from oidc_provider_mock._storage import User, storage

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-max-age", type=int, default=3600)
    parser.add_argument("--user-claims", action="append", default=[])
    args = parser.parse_args(argv)
    users = [User(sub=c.pop("sub"), claims=c) for c in map(json.loads, args.user_claims)]
    app = provider_app(access_token_max_age=timedelta(seconds=args.token_max_age), user_claims=users)
    client_of: dict[str, str] = {}  # access token → the client that obtained it (the package does not keep it)
    calls = {"count": 0}

    @app.after_request
    def _after(response: flask.Response) -> flask.Response:
        request = flask.request
        if request.path == "/oauth2/token" and response.status_code == 200:
            auth = request.authorization
            client_of[response.get_json()["access_token"]] = auth.username if auth else request.form["client_id"]
        elif request.path == "/.well-known/openid-configuration" and response.status_code == 200:
            meta = response.get_json() | {"introspection_endpoint": request.host_url + "oauth2/introspect"}
            response.set_data(json.dumps(meta))
        return response

    @app.post("/oauth2/introspect")
    def _introspect():
        calls["count"] += 1
        auth = flask.request.authorization
        if auth is None or not auth.username or not auth.password:
            return {"error": "invalid_client"}, 401
        token = storage.get_access_token(flask.request.form.get("token", ""))
        if token is None or token.is_expired():
            return {"active": False}
        user = token.get_user()
        client = client_of.get(token.token)
        return {**user.claims, "active": True, "sub": user.sub, "aud": client, "client_id": client,
                "exp": int(token.expires_at.timestamp()), "scope": token.scope,
                "iss": flask.request.host_url.rstrip("/")}

    @app.get("/test/introspections")
    def _count():
        return calls

    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    uvicorn.run(app, interface="wsgi", port=args.port, host="127.0.0.1", log_level="warning")


if __name__ == "__main__":
    serve(sys.argv[1:])
