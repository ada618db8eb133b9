"""`create_app(settings)`: the FastAPI application behind `kb serve`.

Models and index load once, in a background thread started by the lifespan, so the server answers from the first
second: /health says 503 until everything is loaded, then 200. Pass an already built `SearchService` (tests, or
an embedding process) to skip loading the models; the API then serves its index folder's newest version.
"""

from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from ..services.search import SearchService
from ..settings import Settings, get_settings
from . import errors
from .guards import Authenticate, CrossSiteCheck, HostCheck
from .limits import BodyLimit, EarlyReject, Limit
from .routes_bestbets import router as bestbets_router
from .routes_documents import router as documents_router
from .routes_events import router as events_router
from .routes_ops import router as ops_router
from .routes_search import ADMITTED_PATHS, RERANK_PATHS
from .routes_search import router as search_router
from .state import ApiState

DESCRIPTION = """Enterprise knowledge-base search: hybrid recall (BGE + BM25), cross-encoder reranking with
scores in 0..1, threshold and top-N. `/rerank` speaks Cohere's and text-embeddings-inference's dialects.
Errors are always `{"error": message, "error_type": kind}`."""


def create_app(settings: Settings | None = None, service: SearchService | None = None,
               background: bool = True) -> FastAPI:
    """Build the app. `background=False` loads in the lifespan before serving (tests, scripts)."""
    settings = settings if settings is not None else get_settings()
    state = ApiState(settings, service)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Sync routes run on AnyIO's thread pool (40 threads by default). Requests waiting for `Admission` hold a
        # thread each, so a pool smaller than running + waiting would queue the surplus inside AnyIO, without
        # bound and without the 429 (with AnyIO's default pool, 150 clients of benchmarks/load_test.py waited up
        # to 39 s and none got a 429).
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, state.admission.max_active + settings.api_max_queue + 16)
        if background:
            threading.Thread(target=state.load, name="kb-load", daemon=True).start()
        else:
            state.load()
        yield
        state.close()

    app = FastAPI(title="kb-search", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.kb = state
    errors.install(app)
    for router in (search_router, documents_router, events_router, ops_router, bestbets_router):
        app.include_router(router)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        state.metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        state.metrics.request_seconds.labels(path).observe(time.perf_counter() - t0)
        if response.status_code == 429:
            state.metrics.rejected.inc()
        return response

    # Middleware runs outermost first, each before the body is read: the host, CORS (preflights), another site's
    # form, overload, the credential, the body's size; the routes then decide what the caller may do.
    mb = 2**20
    json_limit = Limit(int(settings.api_max_json_mb * mb), "api_max_json_mb")
    # /rerank carries up to api_max_text_chars of documents (3 bytes a character of CJK in UTF-8) in its JSON
    rerank_limit = Limit(json_limit.max_bytes + 3 * settings.api_max_text_chars,
                         "api_max_json_mb, plus 3 bytes per character of api_max_text_chars")
    app.add_middleware(BodyLimit, default=json_limit,
                       by_path={"/ingest": Limit(int(settings.api_max_request_mb * mb), "api_max_request_mb")}
                       | dict.fromkeys(RERANK_PATHS, rerank_limit))
    app.add_middleware(Authenticate, state=state)

    def rejected_early(path: str, method: str) -> None:
        state.metrics.requests.labels(path, method, "429").inc()
        state.metrics.rejected.inc()

    app.add_middleware(EarlyReject, admission=state.admission, paths=ADMITTED_PATHS, on_reject=rejected_early)
    app.add_middleware(CrossSiteCheck, trusted=settings.cors_origins)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(HostCheck, allowed=settings.allowed_hosts,
                       open_mode=not settings.api_keys and state.verifier is None)
    return app
