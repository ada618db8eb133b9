"""What this browser session did: its last search and playground run (for the table and tuning pages), and the
wall-clock latency of every search it ran (for the Status page's P50/P95/P99).

Everything lives in `st.session_state`, so two people using the app see their own results and latencies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import streamlit as st

from app.identity import Caller
from app.services.search import SearchResult, SearchService

from .components.controls import Params

_LATENCY = "kb_latency_ms"
_LAST = "kb_last_search"
MAX_LATENCIES = 10_000


def record_latency(ms: float) -> None:
    log = st.session_state.setdefault(_LATENCY, [])
    log.append(float(ms))
    del log[:-MAX_LATENCIES]


def latencies() -> list[float]:
    return list(st.session_state.get(_LATENCY, []))


@dataclass(frozen=True)
class Search:
    params: Params
    caller: Caller  # whom it ran as
    query: str
    result: SearchResult
    wall_ms: float
    index_version: str | None = None  # the index it ran on: an ingest or delete makes it stale


def reusable(service: SearchService, query: str, params: Params, caller: Caller) -> Search | None:
    """This session's last search when it is the one `search` would run now (same query, parameters, caller and
    index version), else None."""
    last: Search | None = st.session_state.get(_LAST)
    version = getattr(service.index, "version", None)
    if (last is not None and last.query == query and last.params == params and last.caller == caller
            and last.index_version == version):
        return last
    return None


def will_wait(service: SearchService, query: str, params: Params, caller: Caller) -> bool:
    """Whether `search` will rerank now (no reranker, the session's last search or the query cache: at once), so
    the page shows a recall preview meanwhile."""
    if service.reranker is None or reusable(service, query, params, caller) is not None:
        return False
    return not service.is_cached(query, caller=caller, top_k=params.top_k, top_n=params.top_n,
                                 threshold=params.threshold, mode=params.mode, filters=params.document_filters())


def search(service: SearchService, query: str, params: Params, caller: Caller) -> Search:
    """The search for `query` with `params`, as `caller`: reused when this session just ran the same one (a slider
    moved on another page reruns the script), otherwise run, timed and recorded."""
    last = reusable(service, query, params, caller)
    if last is not None:
        return last
    version = getattr(service.index, "version", None)
    t0 = time.perf_counter()
    res = service.search(query, caller=caller, top_k=params.top_k, top_n=params.top_n, threshold=params.threshold,
                         mode=params.mode, filters=params.document_filters())
    wall = (time.perf_counter() - t0) * 1000
    record_latency(wall)
    st.session_state[_LAST] = found = Search(params, caller, query, res, wall, version)
    return found


def last_search(caller: Caller) -> Search | None:
    """This session's last search, if it ran as `caller` (after a sign-out and in, or a new "view as", it is
    not shown)."""
    last: Search | None = st.session_state.get(_LAST)
    return last if last is not None and last.caller == caller else None
