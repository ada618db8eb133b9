"""Who is calling: API keys map to access groups (setting `api_keys`).

With no keys configured the API is open and unrestricted (bind it to loopback). With keys, every route except
/health, /docs and /openapi.json needs `X-API-Key: KEY` or `Authorization: Bearer KEY`; the key's groups decide
which chunks recall may return, and only a key holding '*' may narrow to chosen groups, ingest or delete.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import Request

from .errors import ApiError

ALL = "*"


@dataclass(frozen=True)
class Caller:
    groups: tuple[str, ...] | None  # None: unrestricted
    admin: bool
    key_id: str = "anonymous"

    def search_groups(self, requested: Sequence[str] | None) -> list[str] | None:
        """The groups recall must restrict to for this caller asking for `requested` (None: no preference)."""
        if self.groups is None:
            return None if requested is None else list(requested)
        if requested is None:
            return list(self.groups)
        extra = sorted(set(requested) - set(self.groups))
        if extra:
            raise ApiError(403, f"groups {extra} are not granted to this API key (it has {sorted(self.groups)})",
                           "forbidden")
        return list(requested)

    def require_admin(self, action: str) -> None:
        if not self.admin:
            raise ApiError(403, f"{action} needs an API key whose groups include '*'", "forbidden")


def caller_of(request: Request, keys: dict[str, list[str]]) -> Caller:
    if not keys:
        return Caller(groups=None, admin=True)
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not given:
        raise ApiError(401, "missing API key: send `X-API-Key: KEY` or `Authorization: Bearer KEY`", "unauthorized",
                       headers={"WWW-Authenticate": "Bearer"})
    for key, groups in keys.items():
        if hmac.compare_digest(key.encode(), given.encode()):  # constant time: no key guessing by timing
            admin = ALL in groups
            return Caller(groups=None if admin else tuple(groups), admin=admin, key_id=key[:4] + "…")
    raise ApiError(401, "unknown API key", "unauthorized", headers={"WWW-Authenticate": "Bearer"})
