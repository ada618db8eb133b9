"""`SearchRequest`: one search as a face asked for it, checked once.

The API's body, the CLI's options and the app's sidebar each build one with `SearchRequest.of(...)`; every knob
left None takes the service's default (`SearchDefaults`, from settings) when the search is planned. `of` is the one
place a question and its knobs are checked: the query stripped and not empty (and not longer than a face's limit),
each number in its range, filters parsed. A bad value is a `KbError` of kind validation (too_large for an
over-long query) that names the field, the value, the range and the fix; no model is needed to find it, so a face
can check its input before it loads anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from rerank.params import check_budget_ms, check_threshold, check_top_n
from retrieval.filters import FilterError, Filters, from_mapping, parse
from retrieval.types import check_mode, check_top_k

from ..errors import KbError

PRESETS = {"strict": 0.75, "balanced": 0.5, "recall": 0.4}  # threshold presets (API `preset`, the app's sidebar)


@dataclass(frozen=True)
class SearchDefaults:
    """What a search uses for every knob it is not given (from settings: `app.components.search_defaults`), and the
    fusion weights of the recall legs, which no request chooses."""

    top_k: int = 50
    top_n: int = 5
    threshold: float = 0.5
    mode: str = "hybrid"
    max_per_doc: int | None = None
    merge: bool = False
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    rrf_k: int = 60
    rerank_budget_ms: int | None = None  # rerank what fits in this many ms (None or 0: every candidate)


@dataclass(frozen=True)
class SearchRequest:
    """A question and its knobs; None: the default. Build it with `of`, which checks it."""

    query: str
    top_k: int | None = None
    top_n: int | None = None
    threshold: float | None = None
    mode: str | None = None
    max_per_doc: int | None = None
    merge: bool | None = None
    filters: Filters | None = None
    rerank_budget_ms: int | None = None  # 0: rerank every candidate

    @classmethod
    def of(cls, query: str, *, top_k: int | None = None, top_n: int | None = None, threshold: float | None = None,
           mode: str | None = None, max_per_doc: int | None = None, merge: bool | None = None,
           filters: Filters | Mapping[str, Any] | Iterable[str] | None = None,
           rerank_budget_ms: int | None = None, max_query_chars: int | None = None) -> SearchRequest:
        """The request, checked: KbError (validation) naming the bad field; too_large for a query over
        `max_query_chars` (a face's limit). `filters`: parsed already, a mapping (`{"format": ["pdf"]}`, the API)
        or `KEY=VALUE` strings (the CLI)."""
        query = (query or "").strip()
        if not query:
            raise KbError("validation", "query is empty; type a question")
        if max_query_chars is not None and len(query) > max_query_chars:
            raise KbError("too_large", f"query has {len(query)} characters; the limit is {max_query_chars} "
                                       "(setting api_max_query_chars)")
        try:
            for value, check in ((top_k, check_top_k), (top_n, check_top_n), (threshold, check_threshold),
                                 (mode, check_mode)):
                if value is not None:
                    check(value)
            check_budget_ms(rerank_budget_ms)
        except ValueError as exc:
            raise KbError("validation", str(exc)) from None
        if max_per_doc is not None and (isinstance(max_per_doc, bool) or not isinstance(max_per_doc, int)
                                        or max_per_doc < 1):
            raise KbError("validation", f"max_per_doc must be at least 1 (or unset for no limit); got {max_per_doc}")
        return cls(query, top_k, top_n, threshold, mode, max_per_doc, merge, _filters(filters), rerank_budget_ms)

    def resolved(self, d: SearchDefaults) -> SearchRequest:
        """Every None knob given its default (filters stay None for none)."""
        return replace(self, **{f.name: getattr(d, f.name) for f in fields(self)
                                if f.name not in ("query", "filters") and getattr(self, f.name) is None})

    def params(self, groups: list[str] | None) -> dict[str, Any]:
        """The knobs as a search result reports them (`SearchResult.params`)."""
        return {"top_k": self.top_k, "top_n": self.top_n, "threshold": self.threshold, "mode": self.mode,
                "groups": groups, "max_per_doc": self.max_per_doc, "merge": self.merge,
                "filters": self.filters.to_dict() if self.filters else {},
                "rerank_budget_ms": self.rerank_budget_ms or None}


def _filters(given: Filters | Mapping[str, Any] | Iterable[str] | None) -> Filters | None:
    if given is None or isinstance(given, Filters):
        return given or None
    try:
        parsed = from_mapping(given) if isinstance(given, Mapping) else parse(list(given))
    except FilterError as exc:
        raise KbError("validation", str(exc)) from None
    return parsed or None
