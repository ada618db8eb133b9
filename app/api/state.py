"""What one running API holds: settings, the loaded `SearchService`, metrics, admission, readiness."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from fastapi import Request

from retrieval.index import IndexNotFound, KnowledgeIndex

from ..search import SearchService
from ..settings import Settings
from .auth import Caller, caller_of
from .errors import ApiError
from .limits import Admission
from .metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class ApiState:
    settings: Settings
    service: SearchService
    metrics: Metrics = field(default_factory=Metrics)
    admission: Admission | None = None
    ready: bool = False
    error: str | None = None
    started: float = field(default_factory=time.time)
    ingest_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.admission is None:
            self.admission = Admission(self.settings.api_max_concurrency, self.settings.api_max_queue)

    def load(self) -> None:
        """Load models, then the index (an empty one when none exists yet, so POST /ingest can fill it)."""
        try:
            svc = self.service
            if svc.embedder is None:
                svc.load(need_index=False)
            elif svc.reranker is None and svc.reranker_error is None:
                svc.load_reranker()
            if svc.index is None:
                try:
                    svc.reload_index()
                except IndexNotFound:
                    svc.index = KnowledgeIndex.open(svc.index_dir, svc.embedder.info(), {},
                                                    self.settings.ann_threshold, create=True,
                                                    milvus=self.settings.milvus_config())
            self.metrics.index_chunks.set(len(svc.index.chunks))
            self.ready = True
        except Exception as exc:  # noqa: BLE001 — reported by /health and in the log, the server keeps answering
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("the API could not load its models or index")

    def require_ready(self) -> SearchService:
        if not self.ready:
            if self.error:
                raise ApiError(503, f"the server failed to load: {self.error}", "not_ready")
            raise ApiError(503, "models and index are still loading; retry shortly", "not_ready",
                           headers={"Retry-After": "2"})
        return self.service


def state_of(request: Request) -> ApiState:
    return request.app.state.kb


def caller(request: Request) -> Caller:
    """FastAPI dependency: the caller behind this request's API key (401 when keys are configured and it's bad)."""
    return caller_of(request, state_of(request).settings.api_keys)
