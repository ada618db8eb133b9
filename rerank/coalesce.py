"""Cross-request dynamic batching: the rerank work of concurrent requests shares forward passes, as in
text-embeddings-inference (its `--max-batch-tokens` and short batching wait).

`BatchingReranker(engine)` is a `Reranker` wrapping an engine that can score prepared requests together
(`BatchEngine`: `CrossEncoderReranker`). `score(query, texts)` prepares the request in the caller's thread (query
check, cleaning, windows, token counts: a bad request fails alone, before it is queued), queues it and waits for
its own scores. One worker thread forms rounds:

- it takes the oldest queued request and, while other callers are still preparing theirs, waits for them until
  `max_wait_ms` after that request arrived, stopping early once the queue holds a full budget. It does not wait
  when nobody else is in `score()` (a lone client would pay the wait for nothing: +4 ms a request measured,
  docs/PERFORMANCE.md), nor when requests queued while the previous round ran (they have waited already);
- it takes queued requests first in, first out while their tokens (every (query, window) pair's, special tokens
  included) stay within `max_batch_tokens`; always at least one whole request, so one over the budget runs alone;
- it scores them with one `engine.score_prepared` call (length-sorted across requests) and hands each caller
  its own scores. An exception in a round is handed to every caller of that round; none is swallowed and no
  caller is left waiting.

`close()` stops the worker once its round in flight is done; requests still queued, and any that arrive later,
fail with `RerankerClosed` (a server stopping). `close(drain=True)` (a model swapped out) lets the worker score
what is queued first, and later calls are scored by the engine directly, alone: a search that began on the old
model finishes on it. Counters (rounds, requests, pairs, tokens, requests and pairs per round) are in
`stats()` and in `info().details["batching"]`.

Engines without `score_prepared` (the LLM reranker, a remote TEI server that batches on its own side) are not
wrapped: `can_batch` says which.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from rerank.errors import RerankerClosed, RerankerParameterError
from rerank.types import RerankerInfo
from rerank.windows import Prepared, Window
from retrieval.coverage import Coverage
from retrieval.device import DeviceChoice

DEFAULT_WAIT_MS = 5.0
DEFAULT_BATCH_TOKENS = 16384  # TEI's --max-batch-tokens default
MAX_WAIT_MS = 100.0
REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # requests per round
PAIR_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)  # (query, window) pairs per round


@runtime_checkable
class BatchEngine(Protocol):
    """What `BatchingReranker` needs of an engine besides the `Reranker` protocol."""

    @property
    def name(self) -> str: ...

    @property
    def loaded(self) -> bool: ...

    @property
    def device_choice(self) -> DeviceChoice | None: ...

    def load(self) -> Any: ...

    def info(self) -> RerankerInfo: ...

    def prepare(self, query: str, texts: Sequence[str]) -> Prepared: ...

    def score_prepared(self, requests: Sequence[Prepared]) -> list[list[tuple[float, float]]]: ...


def can_batch(engine: object) -> bool:
    """Whether `engine` can score several prepared requests in one run (and so be wrapped)."""
    return isinstance(engine, BatchEngine)


@dataclass
class Buckets:
    """Counts per upper bound (the last one +Inf) and the sum of what was observed: a Prometheus histogram's shape."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, x: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, x)] += 1
        self.total += x

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations at or below it) per bucket, the last "+Inf"."""
        out, running = [], 0
        for bound, c in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += c
            out.append((bound, running))
        return out


@dataclass(frozen=True)
class BatchingStats:
    """A snapshot of a batcher's counters since it was made."""

    rounds: int
    requests: int
    pairs: int
    tokens: int
    max_round_tokens: int  # the largest round, in tokens (over the budget only for one oversize request alone)
    oversize: int  # rounds of one request alone over the budget
    failed_rounds: int
    requests_per_round: list[tuple[str, int]]  # cumulative buckets
    pairs_per_round: list[tuple[str, int]]
    max_wait_ms: float
    max_batch_tokens: int

    def to_dict(self) -> dict[str, Any]:
        def mean(total: int) -> float | None:
            return round(total / self.rounds, 2) if self.rounds else None

        return {"rounds": self.rounds, "requests": self.requests, "pairs": self.pairs, "tokens": self.tokens,
                "mean_requests_per_round": mean(self.requests), "mean_pairs_per_round": mean(self.pairs),
                "max_round_tokens": self.max_round_tokens, "oversize_rounds": self.oversize,
                "failed_rounds": self.failed_rounds, "requests_per_round": dict(self.requests_per_round),
                "pairs_per_round": dict(self.pairs_per_round), "max_wait_ms": self.max_wait_ms,
                "max_batch_tokens": self.max_batch_tokens}


@dataclass
class _Queued:
    prepared: Prepared
    tokens: int
    arrived: float  # time.monotonic()
    future: Future = field(default_factory=Future)


class BatchingReranker:
    """A `Reranker` that batches concurrent `score()` calls into shared forward passes. See the module docstring."""

    def __init__(self, engine: BatchEngine, max_wait_ms: float = DEFAULT_WAIT_MS,
                 max_batch_tokens: int = DEFAULT_BATCH_TOKENS):
        if not can_batch(engine):
            raise TypeError(f"{type(engine).__name__} cannot score requests together (no prepare/score_prepared); "
                            "serve it unwrapped")
        if not 0 <= max_wait_ms <= MAX_WAIT_MS:
            raise RerankerParameterError("rerank_batch_wait_ms", max_wait_ms, f"0..{MAX_WAIT_MS:g} milliseconds",
                                         "set KB_RERANK_BATCH_WAIT_MS to a few milliseconds (default 5)")
        if max_batch_tokens < 1:
            raise RerankerParameterError("rerank_batch_tokens", max_batch_tokens, "at least 1 token",
                                         "set KB_RERANK_BATCH_TOKENS (default 16384, like TEI's)")
        self.engine = engine
        self.max_wait_ms, self.max_batch_tokens = float(max_wait_ms), int(max_batch_tokens)
        self._queue: deque[_Queued] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._draining = False
        self._preparing = 0  # callers inside score() whose request is not queued yet: company worth waiting for
        self._worker: threading.Thread | None = None  # started by the first score(): a cheap __init__
        self._rounds = self._requests = self._pairs = self._tokens = 0
        self._max_round_tokens = self._oversize = self._failed = 0
        self._per_round = Buckets(REQUEST_BUCKETS)
        self._pairs_per_round = Buckets(PAIR_BUCKETS)

    # ---- the Reranker protocol, the engine's ------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def loaded(self) -> bool:
        return self.engine.loaded

    @property
    def device_choice(self) -> DeviceChoice | None:
        return self.engine.device_choice

    @property
    def device(self) -> str | None:
        return self.device_choice.device if self.device_choice else None

    @property
    def dtype(self) -> str | None:
        return self.device_choice.dtype if self.device_choice else None

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    def load(self) -> BatchingReranker:
        self.engine.load()
        return self

    def coverage(self, text: str) -> Coverage | None:
        return self.engine.coverage(text)

    def windows(self, query: str, texts: Sequence[str]) -> list[list[Window]]:
        return self.engine.windows(query, texts)

    def info(self) -> RerankerInfo:
        """The engine's info, with this batcher's counters in `details["batching"]`."""
        info = self.engine.info()
        return replace(info, details={**(info.details or {}), "batching": self.stats().to_dict()})

    def __repr__(self) -> str:
        return f"BatchingReranker({self.engine!r}, max_wait_ms={self.max_wait_ms}, tokens={self.max_batch_tokens})"

    # ---- scoring ---------------------------------------------------------------------------------------------
    def score(self, query: str, texts: Sequence[str]) -> list[tuple[float, float]]:
        """(raw_score, score) per text, in input order, as the engine's `score()` gives them (up to the float noise
        of sharing forward passes with other requests). Raises what the engine raises for this request's round, or
        `RerankerClosed` after `close()`."""
        with self._cond:
            self._preparing += 1
        try:  # here, so a bad request fails alone and the worker only scores
            prepared = self.engine.prepare(query, texts)
        except BaseException:
            with self._cond:
                self._preparing -= 1
                self._cond.notify_all()
            raise
        item = _Queued(prepared, prepared.n_tokens, time.monotonic())
        with self._cond:
            self._preparing -= 1
            self._cond.notify_all()
            if not prepared.windows:
                return []
            if self._closed and not self._draining:
                raise RerankerClosed(f"reranker {self.name!r}: the batcher was closed (the server is stopping); "
                                     "retry the request")
            direct = self._closed
            if not direct:
                self._queue.append(item)
                if self._worker is None:
                    self._worker = threading.Thread(target=self._work, name=f"kb-rerank-batch-{self.name[-24:]}",
                                                    daemon=True)
                    self._worker.start()
                self._cond.notify()
        if direct:  # drained: the model was swapped out, this request still finishes on it, alone
            return self.engine.score_prepared([prepared])[0]
        return item.future.result()

    def close(self, drain: bool = False) -> None:
        """Stop the worker after its round in flight. Requests still queued fail with `RerankerClosed`, as do later
        ones; with `drain` the queued are scored first and later ones by the engine alone. Idempotent."""
        with self._cond:
            self._closed = True
            self._draining = drain
            pending = [] if drain else list(self._queue)
            if not drain:
                self._queue.clear()
            self._cond.notify_all()
            worker = self._worker
        for item in pending:
            item.future.set_exception(RerankerClosed(
                f"reranker {self.name!r}: the batcher was closed before this request was scored (the server is "
                "stopping); retry the request"))
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=60)

    @property
    def closed(self) -> bool:
        return self._closed

    def _work(self) -> None:
        while True:
            batch = self._next_round()
            if batch is None:
                return
            self._run(batch)

    def _next_round(self) -> list[_Queued] | None:
        """The next round's requests, or None once closed."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:  # closed, and nothing left to drain
                return None
            # wait for the callers still preparing, until max_wait after the oldest arrived or a full budget
            deadline = self._queue[0].arrived + self.max_wait_ms / 1000
            while (not self._closed and self._preparing > 0
                   and sum(q.tokens for q in self._queue) < self.max_batch_tokens):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._queue:  # closed meanwhile, without draining
                return None
            batch = [self._queue.popleft()]
            tokens = batch[0].tokens
            while self._queue and tokens + self._queue[0].tokens <= self.max_batch_tokens:  # FIFO: nobody overtakes
                tokens += self._queue[0].tokens
                batch.append(self._queue.popleft())
            return batch

    def _run(self, batch: list[_Queued]) -> None:
        try:
            results = self.engine.score_prepared([q.prepared for q in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"reranker {self.name!r} returned {len(results)} results for {len(batch)} "
                                   "requests")
        except BaseException as exc:  # noqa: BLE001 — every caller of the round gets it; the worker goes on
            self._count(batch, failed=True)
            for q in batch:
                q.future.set_exception(exc)
            return
        self._count(batch, failed=False)
        for q, scores in zip(batch, results, strict=True):
            q.future.set_result(scores)

    def _count(self, batch: list[_Queued], failed: bool) -> None:
        tokens, pairs = sum(q.tokens for q in batch), sum(q.prepared.n_pairs for q in batch)
        with self._cond:
            self._rounds += 1
            self._requests += len(batch)
            self._pairs += pairs
            self._tokens += tokens
            self._max_round_tokens = max(self._max_round_tokens, tokens)
            self._oversize += tokens > self.max_batch_tokens
            self._failed += failed
            self._per_round.observe(len(batch))
            self._pairs_per_round.observe(pairs)

    def stats(self) -> BatchingStats:
        with self._cond:
            return BatchingStats(self._rounds, self._requests, self._pairs, self._tokens, self._max_round_tokens,
                                 self._oversize, self._failed, self._per_round.cumulative(),
                                 self._pairs_per_round.cumulative(), self.max_wait_ms, self.max_batch_tokens)
