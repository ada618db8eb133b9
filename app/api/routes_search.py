"""POST /search (the whole pipeline) and POST /rerank, /v1/rerank, /v2/rerank (Cohere and TEI shapes)."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter

from ..errors import KbError
from ..services.limits import RerankLimits
from ..services.request import PRESETS, SearchRequest
from .deps import CallerDep, ServiceDep, StateDep
from .errors import error_responses
from .schemas import RerankRequest, RerankResponse, SearchBody, TeiRank

router = APIRouter(responses=error_responses(400, 401, 403, 413, 422, 429, 503))
RERANK_PATHS = frozenset({"/rerank", "/v1/rerank", "/v2/rerank"})
ADMITTED_PATHS = RERANK_PATHS | {"/search"}  # the routes that take a slot


@router.post("/search", summary="Recall K chunks, rerank, keep those above the threshold, return N")
def search(body: SearchBody, st: StateDep, who: CallerDep, service: ServiceDep) -> dict:
    threshold = body.threshold
    if threshold is None and body.preset is not None:
        threshold = PRESETS[body.preset]
    request = SearchRequest.of(body.query, top_k=body.top_k, top_n=body.top_n, threshold=threshold, mode=body.mode,
                               max_per_doc=body.max_per_doc, merge=body.merge_adjacent, filters=body.filters,
                               rerank_budget_ms=body.rerank_budget_ms, max_query_chars=st.settings.api_max_query_chars)
    caller = who.narrowed(body.groups)
    with st.admission.slot():
        st.metrics.in_flight.inc()
        try:
            res = service.search(request, caller)
        finally:
            st.metrics.in_flight.dec()
    st.metrics.observe_search(res.timings_ms, res.reranked, [r.score for r in res.results], res.cached,
                              service.reranker is not None)
    # whether the shared query cache answered says that someone asked this before: for admins only
    return res.to_dict(include_hidden=body.include_hidden, show_cached=who.admin)


def _rerank(body: RerankRequest, st, service):
    """Score every candidate; returns (scored sorted best first, model name). Limits answer 413."""
    from rerank.rank import rerank

    texts = body.candidate_texts()
    query = RerankLimits.of(st.settings).check(body.query, texts)  # the playground's limits too
    if service.reranker is None:
        why = service.reranker_error or "no reranker is configured (reranker = 'none')"
        raise KbError("not_ready", f"reranking is unavailable: {why}")
    with st.admission.slot():
        st.metrics.in_flight.inc()
        t0 = time.perf_counter()
        try:
            scored = rerank(query, texts, service.reranker)
        finally:
            st.metrics.in_flight.dec()
    st.metrics.observe_rerank(len(texts), time.perf_counter() - t0, [x.score for x in scored])
    return scored, service.reranker.name, texts


def _cohere(body: RerankRequest, st, service, version: str) -> RerankResponse:
    if body.tei:
        raise KbError("bad_request", "this endpoint takes Cohere's `documents`; send TEI's `texts` to POST /rerank")
    scored, name, texts = _rerank(body, st, service)
    top = scored if body.top_n is None else scored[:body.top_n]
    with_docs = body.return_documents and version == "1"
    results = [{"index": x.index, "relevance_score": x.score, "raw_score": x.raw_score,
                "document": {"text": texts[x.index]} if with_docs else None} for x in top]
    return RerankResponse(id=str(uuid.uuid4()), results=results,
                          meta={"api_version": {"version": version}, "model": name,
                                "billed_units": {"search_units": 1}})


@router.post("/rerank", summary="Rerank documents: Cohere body (documents) or TEI body (texts)",
             response_model=RerankResponse | list[TeiRank], response_model_exclude_none=True)
def rerank_any(body: RerankRequest, st: StateDep, who: CallerDep, service: ServiceDep):
    if not body.tei:
        return _cohere(body, st, service, "1")
    scored, _, texts = _rerank(body, st, service)
    top = scored if body.top_n is None else scored[:body.top_n]
    # TEI's contract: a list sorted by score; `score` is the logit when raw_scores, else the sigmoid.
    return [TeiRank(index=x.index, score=x.raw_score if body.raw_scores else x.score,
                    text=texts[x.index] if body.return_text else None) for x in top]


@router.post("/v1/rerank", summary="Cohere v1 rerank", response_model=RerankResponse,
             response_model_exclude_none=True)
def rerank_v1(body: RerankRequest, st: StateDep, who: CallerDep, service: ServiceDep) -> RerankResponse:
    return _cohere(body, st, service, "1")


@router.post("/v2/rerank", summary="Cohere v2 rerank", response_model=RerankResponse,
             response_model_exclude_none=True)
def rerank_v2(body: RerankRequest, st: StateDep, who: CallerDep, service: ServiceDep) -> RerankResponse:
    return _cohere(body, st, service, "2")
