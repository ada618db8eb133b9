"""A latency budget for reranking: how fast the reranker really is, and how many recalled candidates fit in a budget.

On a CPU a cross-encoder of bge-reranker-v2-m3's size scores well under one pair a second per core, so K=50 takes
tens of seconds. With a budget (`KB_RERANK_BUDGET_MS`) the best-recalled candidates are reranked, as many as fit,
and the rest keep their recall order (`app.services.search`).

**The unit is tokens, not pairs.** A cross-encoder's cost is about linear in the tokens of (query + passage)
(docs/PERFORMANCE.md, "How cost grows"), and chunks range from a table row of 20 tokens to 512: a pairs/s figure
measured on short pairs would promise twice the pairs that fit when the next query's candidates are long. The meter
therefore learns *tokens per second* and the arithmetic sums each candidate's tokens. The token count is an estimate
(`pair_tokens`: the chunk's `n_tokens` as the chunker counted it, plus an estimate of the query); a consistent
bias cancels, because the meter measures its speed in the same estimated tokens it later spends.

**Before any measurement** the budget reranks only the floor (the first `top_n` candidates, the ones a person is
shown), times it, and spends what is left of the budget at the speed just measured (`rerank_within`). A warm-up at
load was the alternative; it would delay every start (and every reload of a model) by a rerank, for a figure the
first search measures anyway on real passages.

**A default on a CPU, none on a GPU** (`effective_budget_ms`): with no budget set (None), a reranker that runs on a
CPU gets `DEFAULT_CPU_BUDGET_MS`, since a model of bge-reranker-v2-m3's size scores about one pair a second on 2
cores and K=50 would take most of a minute; on a GPU (50 pairs in well under a second) and for a remote server,
none. 0 means none anywhere.

**Never fewer than the floor.** When any budget is set, at least `min(floor, K)` candidates are reranked even if
that overruns the budget: the service passes `top_n`, so the results a person sees first are always reranked; a
budget too small for that is a misconfiguration the warning makes visible (its ms beside what was reranked).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rerank.protocol import Reranker
from rerank.rank import rerank
from rerank.types import Scored
from retrieval.types import Hit

# what a CPU search spends on reranking when no budget is set: the top_n floor alone costs ~5 s for v2-m3 on 2 cores
# (docs/PERFORMANCE.md, "A latency budget": a 2 s budget gave 4–7 s answers instead of 30–78 s)
DEFAULT_CPU_BUDGET_MS = 2000
ALPHA = 0.3  # weight of the newest measurement: the machine's load changes within minutes (a shared CPU)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_WORD = re.compile(r"[^\W\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]+")
PAIR_OVERHEAD = 4  # [CLS], [SEP] ×2 (three for XLM-R), and the rounding of short pairs


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate of the subword tokens of `text`: one per CJK character, 1.3 per other word (the
    mean for English under XLM-R's and BERT's vocabularies), at least 1. Used where no count is known."""
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(text))
    return max(1, cjk + round(words * 1.3))


def pair_tokens(query_tokens: int, hit: Hit) -> int:
    """The estimated tokens of one (query, passage) pair: the chunk's own count (`Chunk.n_tokens`, made by the
    chunker's tokenizer) or, without one, an estimate of its text, plus the query's and a few special tokens."""
    c = hit.chunk
    passage = c.n_tokens if c.n_tokens > 0 else estimate_tokens(c.context_text())
    return query_tokens + passage + PAIR_OVERHEAD


def effective_budget_ms(requested: int | None, reranker: Reranker | None) -> int | None:
    """The budget a search reranks under: `requested` when set (0: none, returned as None); with nothing set,
    `DEFAULT_CPU_BUDGET_MS` for a reranker loaded on a CPU, None for a GPU, a remote server (no device here) or
    no reranker."""
    if requested is not None:
        return requested or None
    choice = reranker.device_choice if reranker is not None else None
    return DEFAULT_CPU_BUDGET_MS if choice is not None and choice.device == "cpu" else None


def affordable(costs: Sequence[float], budget_ms: float | None, tokens_per_s: float | None, floor: int = 1) -> int:
    """How many of `costs` (each candidate's tokens, in recall order, best recalled first) are reranked.

    - `budget_ms` None or ≤ 0: no budget, all of them.
    - no measurement yet (`tokens_per_s` None): `min(floor, len(costs))`, the probe that measures (see the module).
    - otherwise the longest prefix whose tokens take at most `budget_ms` at `tokens_per_s`, but never fewer than
      `min(floor, len(costs))`.
    A prefix, not the cheapest subset: the best-recalled candidates are the likeliest answers, and skipping a long
    one to fit two short ones would rerank worse candidates.
    """
    n = len(costs)
    if budget_ms is None or budget_ms <= 0:
        return n
    least = max(0, min(floor, n))
    if tokens_per_s is None or tokens_per_s <= 0:
        return least
    allowed = budget_ms / 1000.0 * tokens_per_s
    spent, fit = 0.0, 0
    for cost in costs:
        if spent + cost > allowed:
            break
        spent += cost
        fit += 1
    return max(fit, least)


class Throughput:
    """A reranker's measured speed in estimated tokens per second, exponentially weighted (newest measurement
    `ALPHA`); thread-safe (the API reranks in several threads). `rate` is None until the first measurement."""

    def __init__(self, alpha: float = ALPHA):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1]; got {alpha}")
        self.alpha = alpha
        self._rate: float | None = None
        self._n = 0
        self._lock = threading.Lock()

    def observe(self, tokens: float, seconds: float) -> None:
        """Fold in one real rerank: `tokens` scored in `seconds`. Empty or instantaneous calls say nothing."""
        if tokens <= 0 or seconds <= 0:
            return
        speed = tokens / seconds
        with self._lock:
            self._rate = speed if self._rate is None else self.alpha * speed + (1 - self.alpha) * self._rate
            self._n += 1

    @property
    def rate(self) -> float | None:
        with self._lock:
            return self._rate

    @property
    def observations(self) -> int:
        with self._lock:
            return self._n


class Meters:
    """One `Throughput` per reranker name (the serving model and a canary run at different speeds)."""

    def __init__(self) -> None:
        self._meters: dict[str, Throughput] = {}
        self._lock = threading.Lock()

    def of(self, name: str) -> Throughput:
        with self._lock:
            return self._meters.setdefault(name, Throughput())


@dataclass(frozen=True)
class Reranked:
    """What `rerank_within` did: `scored` the first `n` hits, best first (`index` is the position in the hits
    given); `tokens_per_s` the speed the meter holds afterwards."""

    scored: list[Scored]
    n: int
    tokens_per_s: float | None


def rerank_within(query: str, hits: Sequence[Hit], reranker: Reranker, meter: Throughput,
                  budget_ms: float | None = None, floor: int = 1) -> Reranked:
    """Rerank as many of `hits` (recall order) as fit in `budget_ms` at `meter`'s speed (all of them without a
    budget; at least `floor`), and feed the measured speed back into `meter`.

    Without a measurement the first `floor` hits are reranked and timed, then as many of the rest as fit in what is
    left of the budget at that speed (a second call of the reranker; see the module docstring). Ties in score keep
    recall order.
    """
    q_tokens = estimate_tokens(query)
    costs = [pair_tokens(q_tokens, h) for h in hits]
    t0 = time.perf_counter()
    rate = meter.rate
    n = affordable(costs, budget_ms, rate, floor)
    scored = _timed(query, hits[:n], costs[:n], reranker, meter, 0)
    if rate is None and n < len(hits) and budget_ms is not None and budget_ms > 0:
        # the probe of a first search: spend what is left of the budget at the speed it just measured
        left_ms = budget_ms - (time.perf_counter() - t0) * 1000
        more = affordable(costs[n:], left_ms, meter.rate, 0) if left_ms > 0 else 0
        if more:
            scored += _timed(query, hits[n:n + more], costs[n:n + more], reranker, meter, n)
            n += more
    scored.sort(key=lambda s: (-s.raw_score, s.index))
    return Reranked([replace(s, rank=r) for r, s in enumerate(scored, start=1)], n, meter.rate)


def _timed(query: str, hits: Sequence[Hit], costs: Sequence[int], reranker: Reranker, meter: Throughput,
           offset: int) -> list[Scored]:
    if not hits:
        return []
    t = time.perf_counter()
    scored = rerank(query, hits, reranker)
    meter.observe(sum(costs), time.perf_counter() - t)
    return [replace(s, index=s.index + offset) for s in scored]
