"""What this browser session did: its last search and playground run (for the table and tuning pages), and the
wall-clock latency of every search it ran (for the Status page's P50/P95/P99).

Everything lives in `st.session_state`, so two people using the app see their own results and latencies.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from app.identity import Caller
from app.services.results import SearchResult
from app.services.search import Plan

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
    caller: Caller  # whom it ran as
    query: str
    key: tuple  # the plan's cache key: query, knobs, groups, index version, scorer, vocabulary
    result: SearchResult
    wall_ms: float


def reusable(plan: Plan) -> Search | None:
    """This session's last search when it is the one `plan` would run now (the same query, knobs, caller, index
    version, scorer and vocabulary: a slider moved on another page reruns the script), else None."""
    last: Search | None = st.session_state.get(_LAST)
    return last if last is not None and last.key == plan.key and last.caller == plan.caller else None


def remember(plan: Plan, result: SearchResult, wall_ms: float) -> Search:
    """Keep `result` as this session's last search and its wall-clock latency (the Status page's percentiles)."""
    record_latency(wall_ms)
    st.session_state[_LAST] = found = Search(plan.caller, plan.request.query, plan.key, result, wall_ms)
    return found


def last_search(caller: Caller) -> Search | None:
    """This session's last search, if it ran as `caller` (after a sign-out and in, or a new "view as", it is
    not shown)."""
    last: Search | None = st.session_state.get(_LAST)
    return last if last is not None and last.caller == caller else None
