"""A shadow reranker: a candidate model scores every search the serving model scored, in a background thread,
and only its agreement with the serving model is kept (`ModelStats.observe_shadow`). The response never waits
for it, and it starts scoring only while no search is being reranked (`serving()`), so on a machine whose cores the
serving model uses it takes the gaps between searches rather than slowing them; when it falls behind, searches
beyond its bounded queue are counted as dropped, not queued."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rerank.protocol import Reranker
from rerank.rank import rerank
from rerank.validation.gate import compare_models
from retrieval.types import Hit

from .model_stats import ModelStats

log = logging.getLogger(__name__)
SHADOW_TOP = 5  # agreement is the overlap of the two top 5s


class ShadowRunner:
    def __init__(self, reranker: Reranker, stats: ModelStats, queue_size: int = 64):
        self.reranker = reranker
        self.stats = stats
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._in_flight = 0  # searches being reranked by the serving model now
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="kb-shadow", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return self.reranker.name

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Around the serving model's reranking: the shadow waits while any is running."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def submit(self, query: str, hits: Sequence[Hit], serving: str, serving_raw: Sequence[float]) -> bool:
        """Queue one search: its candidates and the serving model's raw scores of them (same order). False when
        the queue is full (the search is counted as dropped)."""
        try:
            self._queue.put_nowait((query, list(hits), serving, list(serving_raw)))
            return True
        except queue.Full:
            self.stats.dropped()
            return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            query, hits, serving, serving_raw = item
            with self._idle:
                self._idle.wait_for(lambda: self._in_flight == 0)
            try:
                t0 = time.perf_counter()
                scored = rerank(query, hits, self.reranker)
                seconds = time.perf_counter() - t0
                raw = [r.raw_score for r in sorted(scored, key=lambda r: r.index)]  # in `hits` order
                self.stats.observe_rerank(self.name, "shadow", seconds, [r.score for r in scored])
                self.stats.observe_shadow(serving, self.name,
                                          compare_models([query] * len(raw), raw, serving_raw, SHADOW_TOP, "search"))
            except Exception:  # noqa: BLE001 — a failing shadow must never affect what is served
                log.exception("shadow reranker %s failed on a search; it is skipped", self.name)
            finally:
                self._queue.task_done()

    def join(self, timeout: float = 30.0) -> bool:
        """Wait until every queued search has been scored (tests, shutdown); whether it finished in time."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._queue.unfinished_tasks

    def stop(self) -> None:
        """End the thread after what is queued (the model is then free to be released)."""
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            threading.Thread(target=self._queue.put, args=(None,), daemon=True).start()
