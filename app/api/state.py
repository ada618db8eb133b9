"""What one running API holds: settings, the live `SearchService` (swapped whole when the index changes), metrics,
admission, readiness."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from ..components import audit_log, build_live, oidc_verifier
from ..errors import KbError
from ..oidc import OidcVerifier
from ..services.audit import AuditLog
from ..services.events import EventLog
from ..services.library import Library
from ..services.live import LiveSearch
from ..services.search import SearchService
from ..settings import Settings
from .limits import Admission, active_limit
from .metrics import AuditCollector, BatchingCollector, Metrics

log = logging.getLogger(__name__)


@dataclass
class ApiState:
    settings: Settings
    service: SearchService | None = None  # given (tests, an embedding process): served instead of one built here
    live: LiveSearch | None = None  # the serving supervisor, made by `load()`
    metrics: Metrics = field(default_factory=Metrics)
    admission: Admission | None = None
    ready: bool = False
    error: str | None = None
    started: float = field(default_factory=time.time)
    ingest_lock: threading.Lock = field(default_factory=threading.Lock)
    verifier: OidcVerifier | None = None  # the sign-in provider's tokens (None: API keys, or open)
    audit: AuditLog | None = None

    def __post_init__(self) -> None:
        if self.admission is None:
            s = self.settings
            self.admission = Admission(active_limit(s.api_max_concurrency, s.rerank_batching), s.api_max_queue)
        if self.verifier is None:
            self.verifier = oidc_verifier(self.settings)
        if self.audit is None:
            self.audit = audit_log(self.settings)
        self.metrics.registry.register(AuditCollector(self.audit))  # refusals counted across rotations

    def load(self) -> None:
        """Load models (unless a service was given), then the index: an empty one when none exists yet, so
        POST /ingest can fill it; from then on published index versions, the vocabulary and the rollout are
        followed (`components.build_live`)."""
        try:
            self.live = build_live(self.settings, self.service, create=True, quiet=False)
            # read at each scrape: the version served changes whenever any process publishes one
            self.metrics.index_chunks.set_function(self._served_chunks)
            self.metrics.registry.register(self.live.stats.collector())  # per-model figures on /metrics
            self.metrics.registry.register(BatchingCollector(lambda: self.live.service))  # rerank rounds
            self.ready = True
        except Exception as exc:  # noqa: BLE001 — reported by /health and in the log, the server keeps answering
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("the API could not load its models or index")

    def require_ready(self) -> SearchService:
        """The service now serving; KbError not_ready (503) while loading or after a failed load."""
        if not self.ready:
            if self.error:
                raise KbError("not_ready", f"the server failed to load: {self.error}")
            raise KbError("not_ready", "models and index are still loading; retry shortly",
                          headers={"Retry-After": "2"})
        return self.live.service

    @property
    def events(self) -> EventLog:
        """The events store; KbError not_ready when there is none (events off, or its database cannot be opened)."""
        events = self.require_ready().events
        if events is None:
            raise KbError("not_ready", "searches and feedback are not recorded here: the setting `events` is off, or "
                                       "the events database could not be opened (see the server log)")
        return events

    def close(self) -> None:
        """At shutdown: stop following changes and write what the events store opened for this API holds queued
        (`LiveSearch.stop`; a store that came with a given service is its owner's to close)."""
        if self.live is not None:
            self.live.stop()

    def library(self) -> Library:
        self.require_ready()
        return self.live.library()

    def reload_index(self) -> SearchService:
        """Serve the index's newest version (after an ingest or a delete)."""
        return self.live.reload_index(create=True, quiet=False)

    def _served_chunks(self) -> float:
        index = self.live.service.index if self.live is not None else None
        return float(len(index.chunks)) if index is not None else 0.0
