"""One table for every failure a user can cause: an error's kind decides its HTTP status (the API's exception
handler) and its exit code (the CLI's guard), nowhere else.

Domain errors carry their kind: `KbError` raised in `app/`, and the lower layers' own errors through a `kind`
class attribute (`IndexLocked` is a conflict, `ModelNotAvailable` not found, `RerankerParameterError` a validation
error...). `kind_of` reads it; anything without a kind is a bug, answered 500 by the API and exit 1 by the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["bad_request", "validation", "unprocessable", "unauthorized", "forbidden", "not_found", "conflict",
               "too_large", "overloaded", "not_ready"]

EXIT_USER_ERROR = 2  # documented in README: a user error (bad argument, missing index or model, index locked)
EXIT_BUG = 1


@dataclass(frozen=True)
class Outcome:
    status: int  # HTTP status
    error_type: str  # `error_type` in the API's error body
    exit_code: int  # the CLI's exit code


TABLE: dict[str, Outcome] = {
    "bad_request": Outcome(400, "bad_request", EXIT_USER_ERROR),
    "validation": Outcome(422, "validation_error", EXIT_USER_ERROR),
    "unprocessable": Outcome(422, "unprocessable", EXIT_USER_ERROR),
    "unauthorized": Outcome(401, "unauthorized", EXIT_USER_ERROR),
    "forbidden": Outcome(403, "forbidden", EXIT_USER_ERROR),
    "not_found": Outcome(404, "not_found", EXIT_USER_ERROR),
    "conflict": Outcome(409, "conflict", EXIT_USER_ERROR),
    "too_large": Outcome(413, "payload_too_large", EXIT_USER_ERROR),
    "overloaded": Outcome(429, "overloaded", EXIT_USER_ERROR),
    "not_ready": Outcome(503, "not_ready", EXIT_USER_ERROR),
}


class KbError(Exception):
    """A failure the caller can fix, of one `kind`; the message names the field or file and the fix. `headers`
    go with the HTTP answer (Retry-After for 429/503, WWW-Authenticate for 401)."""

    def __init__(self, kind: Kind, message: str, headers: dict[str, str] | None = None):
        if kind not in TABLE:
            raise ValueError(f"unknown error kind {kind!r}; one of {', '.join(TABLE)}")
        super().__init__(message)
        self.kind, self.message, self.headers = kind, message, headers

    @property
    def outcome(self) -> Outcome:
        return TABLE[self.kind]


def kind_of(exc: BaseException, plain_values: bool = False) -> str | None:
    """The kind of a domain error, or None for anything else (a bug). With `plain_values` (the CLI, where every
    argument comes from the user) a bare ValueError/TypeError counts as validation and FileNotFoundError as
    not found."""
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str) and kind in TABLE:
        return kind
    if plain_values:
        if isinstance(exc, FileNotFoundError):
            return "not_found"
        if isinstance(exc, (ValueError, TypeError)):
            return "validation"
    return None


def outcome_of(exc: BaseException, plain_values: bool = False) -> Outcome | None:
    kind = kind_of(exc, plain_values)
    return None if kind is None else TABLE[kind]
