"""Who is asking: one `Caller` (who, groups, admin) for the CLI, the API and the app.

- The CLI is the operator's tool: `OPERATOR` sees everything; `--groups` narrows it (`Caller.member_of`).
- The API: an API key maps to groups (`caller_for_key`; a key holding '*' is an admin that sees everything), or an
  OIDC token's claims do (`caller_from_claims`, see `app.oidc`).
- The app: the signed-in user's ID-token claims (`caller_from_claims`), or `OPEN` in open mode.

Groups decide what recall may return (`SearchService.search(request, caller)`); `admin` decides who may ingest,
delete, write defaults and see the admin pages. An admin sees every document unless narrowed ("view as").
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from retrieval.stores.base import allowed_by_groups

from .errors import KbError

ALL = "*"  # an API key whose groups hold it is an admin


@dataclass(frozen=True)
class Caller:
    who: str  # a user id (the token's subject or e-mail), "key:1a2b3c4d5e6f" (`key_id`), "operator" or "open mode"
    groups: tuple[str, ...] | None  # None: every document
    admin: bool = False
    via: str = "cli"  # cli | api-key | oidc | app | open
    name: str = ""  # a display name when the identity provider gives one

    @classmethod
    def member_of(cls, groups: Iterable[str], who: str = "operator", via: str = "cli") -> Caller:
        """A caller restricted to public documents and those of `groups` (no admin rights)."""
        return cls(who, tuple(sorted(set(groups))), admin=False, via=via)

    @property
    def unrestricted(self) -> bool:
        return self.groups is None

    def may_read(self, acl: Sequence[str]) -> bool:
        """Whether a document or chunk with this acl is visible to this caller (no acl: everyone's)."""
        return allowed_by_groups(acl, self.groups)

    def narrowed(self, requested: Sequence[str] | None) -> Caller:
        """This caller searching as a member of `requested` only (None: as itself). Anyone may narrow to groups
        they hold; only an unrestricted caller (an admin) may choose others ("view as"). KbError forbidden else."""
        if requested is None:
            return self
        wanted = tuple(sorted(set(requested)))
        if self.groups is not None:
            extra = sorted(set(wanted) - set(self.groups))
            if extra:
                raise KbError("forbidden", f"groups {extra} are not granted to {self.who} (who has "
                                           f"{sorted(self.groups)})")
        return Caller(self.who, wanted, admin=False, via=self.via, name=self.name)

    def require_admin(self, action: str, admin_group: str | None = None) -> None:
        """KbError forbidden unless this caller is an admin; the message says what grants it."""
        if self.admin:
            return
        needs = f"membership of the admin group {admin_group!r}" if admin_group else \
            "an API key whose groups include '*'"
        raise KbError("forbidden", f"{action} needs {needs}; {self.who} is not an admin")


OPERATOR = Caller("operator", None, admin=True, via="cli")
OPEN = Caller("open mode", None, admin=True, via="open")  # no sign-in configured: one person on one machine


def key_id(key: str) -> str:
    """How an API key is named wherever a caller is recorded (events, audit log, feedback ownership): a hash of the
    whole key, so two keys never share an identity (a prefix did: `team-bob-222` and `team-alice-111` were both
    "team…") and the key itself is never written down."""
    return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def caller_for_key(given: str, keys: Mapping[str, Sequence[str]]) -> Caller | None:
    """The caller an API key stands for (named by `key_id`), or None when it is not one of `keys` (compared in
    constant time)."""
    found = None
    for key, groups in keys.items():
        if hmac.compare_digest(key.encode(), given.encode()):  # no key guessing by timing
            found = (key, groups)
    if found is None:
        return None
    key, groups = found
    admin = ALL in groups
    return Caller(key_id(key), None if admin else tuple(sorted(set(groups))), admin=admin, via="api-key")


def groups_from_claim(value: Any) -> tuple[str, ...]:
    """The groups a token claim holds: a list of names, or one string of names separated by spaces or commas.
    A missing claim means no groups."""
    if value is None:
        return ()
    if isinstance(value, str):
        items = re.split(r"[\s,]+", value)
    elif isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        raise KbError("unauthorized", f"the groups claim holds a {type(value).__name__}; expected a list of group "
                                      "names or a space/comma separated string")
    return tuple(sorted({g.strip() for g in items if g and g.strip()}))


def caller_from_claims(claims: Mapping[str, Any], groups_claim: str, admin_group: str, via: str) -> Caller:
    """The caller an OIDC token (or the app's login) stands for: its subject, its groups from `groups_claim`,
    admin when those include `admin_group`. An admin sees every document."""
    who = str(claims.get("email") or claims.get("preferred_username") or claims.get("sub") or "")
    if not who:
        raise KbError("unauthorized", "the token names nobody (no sub, email or preferred_username claim)")
    groups = groups_from_claim(claims.get(groups_claim))
    admin = admin_group in groups
    return Caller(who, None if admin else groups, admin=admin, via=via, name=str(claims.get("name") or ""))
