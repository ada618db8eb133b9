"""GET /health (readiness), GET /info (what is serving), GET /metrics (Prometheus)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from ..errors import KbError
from ..identity import Caller
from ..services.request import PRESETS
from .deps import METRICS_READER, CallerDep, ServiceDep, StateDep
from .errors import error_responses

router = APIRouter(responses=error_responses(401, 403, 503))


@router.get("/health", summary="200 when models and index are loaded and the search store answers, 503 otherwise")
def health(st: StateDep):
    """For probes, without a credential: only the state (ready | loading | error), nothing about the index (its
    size is for admins, at /info and /metrics)."""
    if st.ready:
        index = st.live.service.index if st.live is not None else None
        if index is not None and index.problem() is not None:  # its reason (a server address) is for the log
            return JSONResponse({"status": "unavailable", "error": "the search store (Milvus) cannot be reached; "
                                 "searches answer 503 until it is back", "error_type": "not_ready"},
                                status_code=503, headers={"Retry-After": "2"})
        return {"status": "ready"}
    status, why = ("error", "the server failed to load (see its log)") if st.error else \
        ("loading", "models and index are still loading")
    return JSONResponse({"status": status, "error": why, "error_type": "not_ready"}, status_code=503,
                        headers={"Retry-After": "2"})


@router.get("/info", summary="Models, device, dtype, defaults and limits; index, cache and files for admins")
def info(st: StateDep, who: CallerDep, svc: ServiceDep) -> dict:
    """What a client needs (the models' names, device, defaults, limits, its own groups) for everyone; for admins
    also the index's size and folder, the cache, the vocabulary, the models' paths and errors and the
    rollout (counts of documents would tell others about groups they cannot read)."""
    s, d = st.settings, svc.defaults  # the defaults served: settings with those `kb tune --write` saved applied
    choice = (svc.reranker.device_choice if svc.reranker else svc.embedder.choice)
    out = {
        "embedder": {"name": svc.embedder.name}, "reranker": {"name": svc.reranker.name} if svc.reranker else None,
        "device": choice.device, "dtype": choice.dtype, "max_length": s.rerank_max_length,
        "defaults": {"top_k": d.top_k, "top_n": d.top_n, "threshold": d.threshold, "mode": d.mode,
                     "max_per_doc": d.max_per_doc, "merge_adjacent": d.merge, "presets": PRESETS},
        "limits": {"max_documents": s.api_max_documents, "max_query_chars": s.api_max_query_chars,
                   "max_text_chars": s.api_max_text_chars, "max_request_mb": s.api_max_request_mb,
                   "max_json_mb": s.api_max_json_mb, "max_file_mb": s.max_file_mb,
                   "max_concurrency": s.api_max_concurrency, "max_queue": s.api_max_queue,
                   "admitted_at_once": st.admission.max_active, "rerank_batching": s.rerank_batching},
        "reranking": _reranking(svc),
        "auth": bool(s.api_keys), "caller_groups": None if who.groups is None else list(who.groups),
        "models": _models(st, svc, who.admin),
    }
    if who.admin:  # file paths, exception texts, counts
        out.update({
            "embedder": svc.embedder.info(),
            "reranker": svc.reranker.info().to_dict() if svc.reranker is not None else None,
            "reranker_error": svc.reranker_error,
            "index": {**svc.index.stats(), "root": str(svc.index.root)},
            "cache": {"size": len(svc.cache), "capacity": svc.cache.size, "hits": svc.cache.hits,
                      "misses": svc.cache.misses},
            "warnings": svc.warnings,
            "vocabulary": _vocabulary(svc.vocabulary),
        })
    return out


def _reranking(svc) -> dict | None:
    """How the serving reranker scores, for everyone (no paths): its backend and why it was chosen, the path its
    last call took under exact re-scoring (the reduced copy, or float32 directly where re-scoring would cost more)
    and why, and the latency budget of a search that sets none (None: every candidate reranked). None without a
    reranker."""
    from rerank.budget import effective_budget_ms

    r = svc.reranker
    if r is None:
        return None
    info = r.info()
    exact = info.exact_choice
    return {"backend": info.backend, "dtype": info.dtype, "backend_reason": (info.backend_choice or {}).get("reason"),
            "exact_path": exact["path"] if exact else None, "exact_reason": exact["reason"] if exact else None,
            "budget_ms": effective_budget_ms(svc.defaults.rerank_budget_ms, r),
            "budget_reason": "set" if svc.defaults.rerank_budget_ms is not None else
            ("the CPU default" if effective_budget_ms(None, r) else "none by default off a CPU")}


def _models(st, svc, admin: bool) -> dict:
    """The reranker serving and the canary and shadow candidates; for admins also why the rollout's choice is
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


def _vocabulary(v) -> dict:
    """What the user dictionary and synonyms in use hold (their versions in the shared database: None before the
    first save), and the lines skipped (with their contents)."""
    return {"user_dict": {"version": v.stamp[0], "words": v.counts.get("user_dict", 0),
                          "fingerprint": v.analyzer.fingerprint},
            "synonyms": {"version": v.stamp[1], "sets": v.counts.get("synonyms", 0),
                         "fingerprint": v.synonyms.fingerprint},
            "problems": list(v.problems)}


def _metrics_reader(request: Request, st: StateDep, who: CallerDep) -> Caller:
    """Admins, or the `metrics_token` (good for /metrics only); 403 for anyone else, audited."""
    if who.via == METRICS_READER.via:
        return who
    action = f"{request.method} {request.url.path}"
    try:
        who.require_admin(action + " (or the metrics_token)",
                          st.settings.auth.admin_group if st.verifier is not None else None)
    except KbError:
        st.audit.record(who, action, "refused")
        raise
    return who


@router.get("/metrics", summary="Prometheus metrics (admins, or the metrics_token)", response_class=Response)
def metrics(st: StateDep, who: Annotated[Caller, Depends(_metrics_reader)]) -> Response:
    """The counters describe the index (its size) and its traffic: for admins, or for a scraper holding the
    `metrics_token` (Prometheus: `authorization: {credentials: TOKEN}` in the scrape config), which opens nothing
    else."""
    m = st.metrics
    events = st.live.service.events if st.ready else None
    return Response(m.render(events.stats if events is not None else None), media_type=m.content_type)
