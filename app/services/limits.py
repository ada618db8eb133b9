"""What one rerank request may hold, for every face that reranks text a person sends: the API's /rerank (and its
Cohere and TEI twins) and the app's Rerank playground check it here, against the same settings
(`api_max_query_chars`, `api_max_documents`, `api_max_text_chars`), so the two cannot drift apart. How many such
requests run at once is `Admission`'s job, here too, in the API and in the app.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import KbError
from ..settings import Settings


@dataclass(frozen=True)
class RerankLimits:
    max_query_chars: int
    max_documents: int
    max_text_chars: int

    @classmethod
    def of(cls, s: Settings) -> RerankLimits:
        return cls(s.api_max_query_chars, s.api_max_documents, s.api_max_text_chars)

    def check(self, query: str, texts: Sequence[str]) -> str:
        """The query, stripped, when `query` and `texts` are within the limits. KbError bad_request for an empty
        query or no texts; too_large naming the count, the limit and its setting when one is over."""
        query = query.strip()
        if not query:
            raise KbError("bad_request", "query is empty; send a question in `query`")
        if len(query) > self.max_query_chars:
            raise KbError("too_large", f"query has {len(query)} characters; the limit is {self.max_query_chars} "
                                       "(setting api_max_query_chars)")
        if not texts:
            raise KbError("bad_request", "no documents to rerank: send at least one in `documents` (or `texts`)")
        if len(texts) > self.max_documents:
            raise KbError("too_large", f"{len(texts)} documents; the limit is {self.max_documents} per request "
                                       "(setting api_max_documents): split the request")
        total = sum(len(t) for t in texts)
        if total > self.max_text_chars:
            raise KbError("too_large", f"{total} characters of documents; the limit is {self.max_text_chars} per "
                                       "request (setting api_max_text_chars)")
        return query


BATCHED_ACTIVE = 16  # requests computed at once with cross-request batching (see `active_limit`)


def active_limit(max_concurrency: int, batching: bool) -> int:
    """Model-bound requests admitted at once. Without batching, `api_max_concurrency`: each request runs its own
    forward passes, so more at once would only share the cores. With batching (`rerank.coalesce`) the reranker's
    one worker serialises the forward passes, so admission no longer guards the cores from parallel passes, and a
    request can only share a pass with requests that were admitted: at least BATCHED_ACTIVE then, about the
    /rerank requests of 20 short passages (~1,000 tokens each) that the default 16,384-token budget holds, so a
    round can fill. What admission still bounds is memory and the embed and recall stages, which run outside the
    batcher (one short query each)."""
    return max(max_concurrency, BATCHED_ACTIVE) if batching else max_concurrency


class Admission:
    def __init__(self, max_active: int, max_waiting: int):
        self._slots = threading.BoundedSemaphore(max_active)
        self._lock = threading.Lock()
        self.max_active, self.max_waiting = max_active, max_waiting
        self.active = 0
        self.waiting = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one compute slot for the block; raises KbError overloaded (429) when the queue is full."""
        with self._lock:
            if self.waiting >= self.max_waiting and self.active >= self.max_active:
                raise KbError("overloaded", f"server busy: {self.active} requests running and {self.waiting} "
                                            f"waiting (limit {self.max_waiting}); retry shortly",
                              headers={"Retry-After": "1"})
            self.waiting += 1
        self._slots.acquire()
        with self._lock:
            self.waiting -= 1
            self.active += 1
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1
            self._slots.release()

    def full(self) -> bool:
        """Whether a request arriving now would be refused (read without the lock: a hint for `EarlyReject`;
        `slot()` stays the judge of what it lets through)."""
        return self.waiting >= self.max_waiting and self.active >= self.max_active
