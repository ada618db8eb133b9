"""What this browser session did: its last search and playground run (for the table and tuning pages), and the
wall-clock latency of every search it ran (for the Status page's P50/P95/P99).

Everything lives in `st.session_state`, so two people using the app see their own results and latencies.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import streamlit as st

from app.search import SearchResult, SearchService

from .controls import Params

_LATENCY = "kb_latency_ms"
_LAST = "kb_last_search"
MAX_LATENCIES = 10_000


def record_latency(ms: float) -> None:
    log = st.session_state.setdefault(_LATENCY, [])
    log.append(float(ms))
    del log[:-MAX_LATENCIES]


def latencies() -> list[float]:
    return list(st.session_state.get(_LATENCY, []))


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """{"p50": ..., "p95": ..., "p99": ...} (linear interpolation, as numpy does); empty for no values."""
    if not values:
        return {}
    arr = np.asarray(values, dtype=float)
    return {f"p{p:g}": float(np.percentile(arr, p)) for p in points}


@dataclass(frozen=True)
class Search:
    params: Params
    query: str
    result: SearchResult
    wall_ms: float
    index_version: str | None = None  # the index it ran on: an ingest or delete makes it stale


def search(service: SearchService, query: str, params: Params) -> Search:
    """The search for `query` with `params`: reused when this session just ran the same one (a slider moved on
    another page reruns the script), otherwise run, timed and recorded."""
    last: Search | None = st.session_state.get(_LAST)
    version = getattr(service.index, "version", None)
    if last is not None and last.query == query and last.params == params and last.index_version == version:
        return last
    t0 = time.perf_counter()
    res = service.search(query, params.top_k, params.top_n, params.threshold, params.groups, params.mode)
    wall = (time.perf_counter() - t0) * 1000
    record_latency(wall)
    st.session_state[_LAST] = found = Search(params, query, res, wall, version)
    return found


def last_search() -> Search | None:
    return st.session_state.get(_LAST)
