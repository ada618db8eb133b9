"""`RemoteReranker`: the `Reranker` protocol over HTTP, against a text-embeddings-inference (TEI) compatible
`POST /rerank` — TEI serving bge-reranker-v2-m3 on GPUs (scaled by replicas behind one URL), or another `kb serve`.

Names: `tei+http://host:8080`, `tei+https://...`, or a plain `http(s)://host:port` (a trailing `/rerank` is
accepted). The contract, TEI's own::

    POST /rerank  {"query": q, "texts": [...], "raw_scores": true, "truncate": true}
    200           [{"index": i, "score": logit}, ...]        (sorted by score; we put them back in input order)

`raw_scores` makes `score` the model's logit, so ours is (logit, sigmoid(logit)) exactly as a local cross-encoder
gives. `truncate` lets the server cut a pair at its max input length (TEI has no long-passage windows, unlike the
local engine, which scores long passages window by window).

- Batching: at most `batch_size` texts per request, never more than the server's `max_client_batch_size`
  (read from its `GET /info` at `load()`; TEI's default is 32). Batches go out concurrently (TEI batches
  requests together on the GPU). A 413 (batch too large in texts or tokens) halves that batch and remembers the
  smaller size for later calls.
- Failures: connect errors, dropped connections, 429 and 503 are retried with exponential back-off (honouring
  Retry-After), at most `retries` times; anything else (4xx, 500, a read timeout, a malformed answer) raises
  `RemoteRerankError` at once, naming the server and what it said.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from rerank.errors import RerankerLoadError, RerankerParameterError, RerankError
from rerank.text import check_query
from rerank.types import RerankerOptions, sigmoid
from retrieval.device import DeviceChoice

from .base import EngineBase

log = logging.getLogger(__name__)

SCHEMES = ("tei+http://", "tei+https://", "http://", "https://")
RETRY_STATUS = (429, 503)  # the server says "later": overloaded, or a replica starting / draining
RETRY_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)  # nothing was computed
MAX_BACKOFF_S = 8.0


class RemoteRerankError(RerankError, RuntimeError):
    """The reranker server failed or answered something that is not TEI's shape. The message names the server."""

    kind = "not_ready"  # app.errors maps it to an HTTP status and an exit code


class _TooLarge(Exception):
    """413: this batch is too big for the server."""


def is_remote(name: str) -> bool:
    """A reranker name that is a URL of a TEI-compatible server."""
    return isinstance(name, str) and name.strip().lower().startswith(SCHEMES)


def rerank_url(name: str) -> str:
    """`tei+http://host:8080` → `http://host:8080/rerank`."""
    url = name.strip()
    url = url[4:] if url.lower().startswith("tei+") else url
    url = url.rstrip("/")
    return url if url.endswith("/rerank") else url + "/rerank"


class RemoteReranker(EngineBase):
    """TEI-compatible remote reranker; see the module docstring. Cheap `__init__`; `load()` contacts the server.
    Of the options it uses `batch_size` (default 32) and `api_key` (sent as a bearer token)."""

    kind = "remote"
    DEFAULT_BATCH = 32

    def __init__(self, name: str, options: RerankerOptions | None = None, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.25, concurrency: int = 4, transport: httpx.BaseTransport | None = None):
        super().__init__(name, options)
        if not is_remote(name):
            raise RerankerParameterError("reranker", name, "a URL: tei+http://host:port or http(s)://host:port",
                                         "pass e.g. --reranker tei+http://localhost:8080")
        checks = (("timeout", timeout, timeout > 0, "seconds > 0"), ("retries", retries, retries >= 0, "≥ 0"),
                  ("backoff", backoff, backoff >= 0, "seconds ≥ 0"),
                  ("concurrency", concurrency, concurrency >= 1, "≥ 1 requests at once"))
        for param, value, ok, allowed in checks:
            if not ok:
                raise RerankerParameterError(param, value, allowed, f"pass {param} within that range")
        self._name = name.strip()
        self.url = rerank_url(name)
        self.base_url = self.url.removesuffix("/rerank")
        self.batch_size = self.options.batch_size or self.DEFAULT_BATCH
        self.timeout, self.retries, self.backoff, self.concurrency = timeout, retries, backoff, concurrency
        api_key = self.options.api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Connecting should be quick; reading waits for the GPU. Limits fit the concurrent batches.
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)), headers=headers,
                                    transport=transport, limits=httpx.Limits(max_connections=concurrency))
        self._batch_limit = self.batch_size  # lowered by the server's max_client_batch_size and by 413s
        self._server: dict[str, Any] | None = None
        self._retried = 0
        self._halvings = 0

    # ---- protocol ----------------------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._choice is not None

    def load(self) -> RemoteReranker:
        """Ask the server what it serves (`GET /info`) and adopt its batch limit. Idempotent. Raises
        RerankerLoadError when the server cannot be reached or serves no reranker."""
        with self._lock:
            if self._choice is not None:
                return self
        try:
            resp = self._request("GET", self.base_url + "/info")
        except RemoteRerankError as exc:
            raise RerankerLoadError(f"reranker server {self.base_url} cannot be reached: {exc}; start it, or fix "
                                    "--reranker / KB_RERANKER") from exc
        info: dict[str, Any] = {}
        if resp.status_code == 200:
            try:
                info = resp.json() if isinstance(resp.json(), dict) else {}
            except ValueError:
                info = {}
        elif resp.status_code in (401, 403):
            raise RerankerLoadError(f"reranker server {self.base_url} refused the API key ({resp.status_code}); "
                                    "set KB_RERANKER_API_KEY to a key it accepts")
        model_type = info.get("model_type")
        if isinstance(model_type, dict) and model_type and "reranker" not in model_type:
            raise RerankerLoadError(f"reranker server {self.base_url} serves a {', '.join(model_type)} model "
                                    f"({info.get('model_id')}), not a reranker; point KB_RERANKER at a TEI started "
                                    "with a reranker such as BAAI/bge-reranker-v2-m3")
        limit = info.get("max_client_batch_size")
        with self._lock:
            if isinstance(limit, int) and limit >= 1:
                self._batch_limit = min(self._batch_limit, limit)
            self._server = {k: info.get(k) for k in ("model_id", "model_dtype", "max_client_batch_size",
                                                     "max_input_length", "version") if k in info}
            model = info.get("model_id") or (info.get("reranker") or {}).get("name")  # TEI, or another kb serve
            self._choice = DeviceChoice(device="remote", dtype=str(info.get("model_dtype") or info.get("dtype")
                                                                  or "unknown"),
                                        reason=f"scored by {self.base_url}" + (f" ({model})" if model else ""))
        log.info("remote reranker %s: %s, batches of %d", self._name, self._choice.reason, self._batch_limit)
        return self

    def score(self, query: str, texts: Sequence[str]) -> list[tuple[float, float]]:
        """(raw logit, sigmoid) per text, Python floats, in input order. Loads on first use."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string; wrap it in a list")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a str; got {type(t).__name__}")
        query = check_query(query)
        texts = list(texts)
        if not texts:
            return []
        self.load()
        size = self._batch_limit
        batches = [texts[i:i + size] for i in range(0, len(texts), size)]
        if len(batches) == 1 or self.concurrency == 1:
            parts = [self._score_batch(query, b) for b in batches]
        else:
            with ThreadPoolExecutor(min(self.concurrency, len(batches))) as pool:
                parts = list(pool.map(lambda b: self._score_batch(query, b), batches))
        return [(raw, sigmoid(raw)) for part in parts for raw in part]

    def _describe(self) -> dict[str, Any]:
        return {"backend": "http", "path": self.url, "batch_size": self.batch_size,
                "effective_batch_size": self._batch_limit,
                "details": {"url": self.url, "server": self._server, "halvings_on_413": self._halvings,
                            "retries": self.retries, "retried": self._retried, "timeout_s": self.timeout,
                            "concurrency": self.concurrency}}

    def close(self) -> None:
        self._client.close()

    # ---- HTTP --------------------------------------------------------------------------------------------------
    def _score_batch(self, query: str, texts: list[str]) -> list[float]:
        """Logits of one batch in input order; a 413 splits it in halves (down to one text)."""
        try:
            return self._post(query, texts)
        except _TooLarge:
            if len(texts) == 1:
                raise RemoteRerankError(f"reranker server {self.url} refuses even a single text (413): the query "
                                        "or the passage is larger than it accepts") from None
            half = (len(texts) + 1) // 2
            with self._lock:
                if half < self._batch_limit:
                    self._batch_limit, self._halvings = half, self._halvings + 1
                    log.warning("reranker server %s: batch of %d too large (413); now sending %d", self.url,
                                len(texts), half)
            return self._score_batch(query, texts[:half]) + self._score_batch(query, texts[half:])

    def _post(self, query: str, texts: list[str]) -> list[float]:
        resp = self._request("POST", self.url, json={"query": query, "texts": texts, "raw_scores": True,
                                                     "truncate": True})
        if resp.status_code == 413:
            raise _TooLarge()
        if resp.status_code != 200:
            raise RemoteRerankError(f"reranker server {self.url} answered {resp.status_code}: {resp.text[:300]}")
        return self._parse(resp, len(texts))

    def _parse(self, resp: httpx.Response, n: int) -> list[float]:
        try:
            body = resp.json()
            pairs = [(int(r["index"]), float(r["score"])) for r in body]
        except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
            raise RemoteRerankError(f"reranker server {self.url} answered {resp.text[:200]!r}, not TEI's "
                                    '[{"index": i, "score": s}, ...]') from exc
        if sorted(i for i, _ in pairs) != list(range(n)):
            raise RemoteRerankError(f"reranker server {self.url} scored indexes {sorted(i for i, _ in pairs)[:20]} "
                                    f"for {n} texts; each of 0..{n - 1} must appear once")
        out = [0.0] * n
        for i, s in pairs:
            out[i] = s
        return out

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One HTTP call with bounded retries on connection failures, 429 and 503; other answers are returned."""
        why = ""
        for attempt in range(self.retries + 1):
            delay = min(self.backoff * 2 ** attempt, MAX_BACKOFF_S)
            try:
                resp = self._client.request(method, url, **kwargs)
            except RETRY_ERRORS as exc:
                why = f"{type(exc).__name__}: {exc}"
            except httpx.TimeoutException as exc:  # the server took the work but not in time: do not pile on
                raise RemoteRerankError(f"reranker server {url} did not answer within {self.timeout} s "
                                        f"({type(exc).__name__}); raise the timeout or add replicas") from exc
            else:
                if resp.status_code not in RETRY_STATUS:
                    return resp
                why = f"{resp.status_code}: {resp.text[:200]}"
                after = resp.headers.get("retry-after", "")
                if after.replace(".", "", 1).isdigit():
                    delay = min(float(after), MAX_BACKOFF_S)
            if attempt < self.retries:
                with self._lock:
                    self._retried += 1
                log.info("reranker server %s: %s; retry %d/%d in %.2f s", url, why, attempt + 1, self.retries,
                         delay)
                time.sleep(delay)
        raise RemoteRerankError(f"reranker server {url} failed {self.retries + 1} times, last: {why}")
