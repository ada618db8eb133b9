"""Metadata filters: which documents a search may return besides what the caller's groups allow.

A filter is a set of conditions, all of which a document must meet; several values of one key mean any of them.
Keys: the built-ins `format` (pdf, docx, ...), `path` (a folder or file path inside the document's source path,
e.g. `hr` or `docs/hr`), `title` (text the title contains, any case), `updated` (a date compared with the date the
document states, else its file's modification time: `updated>=2024-01-01`), and every field the documents
carry in their front-matter or sidecar (`owner=人力资源部`). Filters are applied inside recall like the access
groups, so K is filled with matching chunks. An unknown key or a bad date is a `FilterError` that lists the keys
the index knows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .stores.base import allowed_by_groups

BUILT_IN = ("format", "path", "title", "updated")
OPS = (">=", "<=", "!=", ">", "<", "=")
_CONDITION = re.compile(r"^\s*([^<>=!\s]+)\s*(>=|<=|!=|>|<|=)\s*(.*?)\s*$")


class FilterError(ValueError):
    """A filter that cannot be applied: the message names the key or value and the fix."""

    kind = "validation"  # app.errors maps it to an HTTP status and an exit code


@dataclass(frozen=True)
class Condition:
    key: str
    op: str  # one of OPS; only `updated` takes the ordering ones
    values: tuple[str, ...]


@dataclass(frozen=True)
class Filters:
    conditions: tuple[Condition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def key(self) -> tuple:
        """A hashable form (for the query cache)."""
        return tuple((c.key, c.op, c.values) for c in self.conditions)

    def to_dict(self) -> dict[str, Any]:
        """The API's shape: a value, a list of values, or (`updated`, `!=`) the operator before the value."""
        out: dict[str, Any] = {}
        for c in self.conditions:
            if c.op != "=":
                out[c.key] = c.op + c.values[0]
            else:
                out[c.key] = c.values[0] if len(c.values) == 1 else list(c.values)
        return out


def parse(items: Iterable[str]) -> Filters:
    """`KEY=VALUE` (repeat a key for any of several values), `updated>=2024-01-01` (>=, <=, >, <), `KEY!=VALUE`."""
    merged: dict[tuple[str, str], list[str]] = {}
    for item in items:
        m = _CONDITION.match(item)
        if not m or not m.group(3):
            raise FilterError(f"filter {item!r} is not KEY=VALUE (or updated>=DATE); e.g. --filter format=pdf")
        key, op, value = m.group(1), m.group(2), m.group(3)
        merged.setdefault((key, op), []).append(value)
    return _checked(Filters(tuple(Condition(k, op, tuple(v)) for (k, op), v in merged.items())))


def from_mapping(data: Mapping[str, Any] | None) -> Filters:
    """The API's `{"format": ["pdf"], "owner": "hr", "updated": ">=2024-01-01"}`."""
    if not data:
        return Filters()
    conditions = []
    for key, value in data.items():
        values = value if isinstance(value, list | tuple) else [value]
        if not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise FilterError(f"filters.{key}: give a string or a list of strings; got {value!r}")
        op = "="
        if key == "updated":
            m = re.match(r"^\s*(>=|<=|>|<|=)?\s*(.+)$", values[0])
            op, values = (m.group(1) or "="), [m.group(2)]
        conditions.append(Condition(str(key), op, tuple(v.strip() for v in values)))
    return _checked(Filters(tuple(conditions)))


def _checked(filters: Filters) -> Filters:
    for c in filters.conditions:
        if c.op not in ("=", "!=") and c.key != "updated":
            raise FilterError(f"filter {c.key}{c.op}…: only `updated` can be compared (>=, <=, >, <); use = for "
                              f"{c.key}")
        if c.key == "updated":
            for v in c.values:
                _timestamp(v)
    return filters


def _timestamp(value: str) -> float:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(f"updated: {value!r} is not a date; write it as YYYY-MM-DD (e.g. updated>=2024-01-01)"
                          ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _date_of(record: Any) -> float | None:
    if record.updated:
        try:
            return _timestamp(record.updated)
        except FilterError:
            pass
    return record.mtime


def _path_has(source: str, value: str) -> bool:
    want = [p for p in value.replace("\\", "/").split("/") if p]
    parts = [p for p in source.replace("\\", "/").split("/") if p]
    return any(parts[i:i + len(want)] == want for i in range(len(parts) - len(want) + 1)) if want else False


def _values(record: Any, key: str) -> Sequence[str]:
    if key == "format":
        return [record.format]
    value = record.fields.get(key)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _meets(record: Any, c: Condition) -> bool:
    if c.key == "updated":
        when = _date_of(record)
        if when is None:
            return False
        limit = _timestamp(c.values[0])
        if c.op in ("=", "!="):  # the same day
            day = datetime.fromtimestamp(limit, timezone.utc).date()
            same = datetime.fromtimestamp(when, timezone.utc).date() == day
            return same if c.op == "=" else not same
        return {">=": when >= limit, "<=": when <= limit, ">": when > limit, "<": when < limit}[c.op]
    if c.key == "path":
        hit = any(_path_has(record.source, v) for v in c.values)
    elif c.key == "title":
        hit = any(v.lower() in (record.title or "").lower() for v in c.values)
    else:
        have = {v.lower() for v in _values(record, c.key)}
        hit = any(v.lower() in have for v in c.values)
    return hit if c.op == "=" else not hit


def known_keys(records: Iterable[Any]) -> list[str]:
    """The built-in keys and every field some document carries."""
    return sorted(set(BUILT_IN) | {k for r in records for k in r.fields})


def matching(records: Mapping[str, Any], filters: Filters) -> set[str]:
    """The ids of the documents (`DocRecord`s by id) that meet every condition; FilterError for an unknown key."""
    keys = known_keys(records.values())
    for c in filters.conditions:
        if c.key not in keys:
            raise FilterError(f"unknown filter key {c.key!r}; this index knows: {', '.join(keys)}")
    return {doc_id for doc_id, r in records.items() if all(_meets(r, c) for c in filters.conditions)}


def visible(records: Mapping[str, Any], groups: Sequence[str] | None) -> Mapping[str, Any]:
    """The documents (`DocRecord`s by id) a caller of `groups` may read (None: all)."""
    if groups is None:
        return records
    return {d: r for d, r in records.items() if allowed_by_groups(r.acl, groups)}


def matching_visible(records: Mapping[str, Any], filters: Filters | None,
                     groups: Sequence[str] | None) -> set[str] | None:
    """The ids of the documents `groups` may read that meet `filters` (None: no filter). FilterError for a key no
    such document has: the message lists the keys of the documents this caller may read, never others'."""
    return matching(visible(records, groups), filters) if filters else None


def value_choices(records: Iterable[Any], limit: int = 30) -> dict[str, list[str]]:
    """For each filterable key with a few distinct values (2..limit), those values: what the app's sidebar offers."""
    seen: dict[str, set[str]] = {"format": set()}
    for r in records:
        seen["format"].add(r.format)
        for k in r.fields:
            seen.setdefault(k, set()).update(_values(r, k))
    return {k: sorted(v) for k, v in sorted(seen.items()) if 2 <= len(v) <= limit}
