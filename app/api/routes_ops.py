"""GET /health (readiness), GET /info (what is serving), GET /metrics (Prometheus)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ..services.search import PRESETS
from .deps import CallerDep, ServiceDep, StateDep
from .errors import error_responses

router = APIRouter(responses=error_responses(401, 503))


@router.get("/health", summary="200 when models and index are loaded, 503 before (or if loading failed)")
def health(st: StateDep):
    if st.ready:
        service = st.live.service
        idx = service.index
        return {"status": "ready", "index_version": idx.version, "chunks": len(idx.chunks),
                "reranker": service.reranker is not None, "uptime_s": round(time.time() - st.started, 1)}
    status = "error" if st.error else "loading"
    return JSONResponse({"status": status, "error": st.error or "models and index are still loading",
                         "error_type": "not_ready"}, status_code=503, headers={"Retry-After": "2"})


@router.get("/info", summary="Models, device, dtype, index size, defaults and limits")
def info(st: StateDep, who: CallerDep, svc: ServiceDep) -> dict:
    s = st.settings
    emb = svc.embedder.info()
    rr = svc.reranker.info().to_dict() if svc.reranker is not None else None
    return {
        "embedder": emb, "reranker": rr, "reranker_error": svc.reranker_error,
        "device": (svc.reranker.device_choice if svc.reranker else svc.embedder.choice).device,
        "dtype": (svc.reranker.device_choice if svc.reranker else svc.embedder.choice).dtype,
        "max_length": s.rerank_max_length, "index": {**svc.index.stats(), "root": str(svc.index.root)},
        "defaults": {"top_k": s.top_k, "top_n": s.top_n, "threshold": s.threshold, "mode": s.recall_mode,
                     "max_per_doc": s.max_per_doc, "merge_adjacent": s.merge_adjacent, "presets": PRESETS},
        "limits": {"max_documents": s.api_max_documents, "max_query_chars": s.api_max_query_chars,
                   "max_text_chars": s.api_max_text_chars, "max_request_mb": s.api_max_request_mb,
                   "max_file_mb": s.max_file_mb, "max_concurrency": s.api_max_concurrency,
                   "max_queue": s.api_max_queue, "admitted_at_once": st.admission.max_active,
                   "rerank_batching": s.rerank_batching},
        "auth": bool(s.api_keys), "caller_groups": None if who.groups is None else list(who.groups),
        "cache": {"size": len(svc.cache), "capacity": svc.cache.size, "hits": svc.cache.hits,
                  "misses": svc.cache.misses},
        "warnings": svc.warnings,
        "vocabulary": _vocabulary(svc.vocabulary, who.admin),
        "models": _models(st, svc, who.admin),
    }


def _models(st, svc, admin: bool) -> dict:
    """The reranker serving and the canary and shadow candidates; for admins also why the rollout file's choice is
    not (all) served, this process's figures per model and the promotion history (for others: whether there is
    such an error)."""
    from ..components import read_rollout

    out = {"serving": svc.reranker_name if svc.reranker is not None else None,
           "canary": {"model": svc.canary.name, "share": svc.canary_share} if svc.canary is not None else None,
           "shadow": svc.shadow.name if svc.shadow is not None else None,
           "error": st.live.models_error is not None}
    if admin:  # file paths, exception texts, who promoted what
        out.update(error=st.live.models_error, figures=st.live.stats.snapshot(),
                   history=list(read_rollout(st.settings)[0].history))
    return out


def _vocabulary(v, admin: bool) -> dict:
    """What the user dictionary and synonyms in use hold; the lines skipped (file paths and contents) for
    admins only."""
    out = {"user_dict": {"path": str(v.user_dict_path) if v.user_dict_path else None,
                         "words": v.counts.get("user_dict", 0), "fingerprint": v.analyzer.fingerprint},
           "synonyms": {"path": str(v.synonyms_path) if v.synonyms_path else None,
                        "sets": v.counts.get("synonyms", 0), "fingerprint": v.synonyms.fingerprint}}
    if admin:
        out["problems"] = list(v.problems)
    return out


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(st: StateDep, who: CallerDep) -> Response:
    """Needs a key when keys are configured, like every route but /health and the docs: the counters describe the
    index and its traffic (Prometheus sends one with `authorization: {credentials: KEY}` in the scrape config)."""
    m = st.metrics
    events = st.live.service.events if st.ready else None
    return Response(m.render(events.stats if events is not None else None), media_type=m.content_type)
