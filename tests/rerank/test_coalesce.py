"""Cross-request batching on real tiny cross-encoders: `score_requests` scores several requests as their own
`score()` would, and `BatchingReranker` hands every concurrent caller exactly its own scores, shares forward
passes, keeps to its token budget and never leaves a caller waiting. Never asserts what a random model ranks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rerank.coalesce import BatchingReranker, can_batch
from rerank.engines.cross_encoder import CrossEncoderReranker
from rerank.errors import RerankerClosed, RerankerParameterError
from rerank.protocol import Reranker
from rerank.types import RerankerOptions
from tests.tiny_models import build_tiny_cross_encoder

TOL = 1e-5  # float32 noise of another batch composition (padding to another length)
LONG = " ".join(["Employees must request annual leave through the HR portal with their manager's approval."] * 12)
REQUESTS = [
    ("How do I reset my VPN token?", ["Open the self-service portal and choose Reset.", LONG, "Laptops come from IT."]),
    ("年假怎么申请", ["员工应当申请年假，通过人力资源系统办理。", "试用期员工离职应当提前三日通知公司。"]),
    ("travel expenses", [LONG + " Travel expenses are reimbursed within five working days.", "Meal allowances."]),
    ("badge lost", ["Staff must report a lost badge to security as soon as possible."]),
    ("empty", []),
    ("password", ["Reset your password every 90 days.", "x", "Passwords are never shared.", LONG[:300]]),
]


def _close(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> None:
    assert len(a) == len(b)
    for (ra, sa), (rb, sb) in zip(a, b, strict=True):
        assert ra == pytest.approx(rb, abs=TOL) and sa == pytest.approx(sb, abs=TOL)


@pytest.mark.parametrize("engine", ["bert_engine", "xlmr_engine"])
def test_score_requests_equals_each_request_scored_alone(engine, request):
    e = request.getfixturevalue(engine)
    assert any(len(ws) > 1 for ws in e.windows(*REQUESTS[0])), "the long passage must be windowed"
    together = e.score_requests(REQUESTS)
    assert len(together) == len(REQUESTS)
    for (query, texts), got in zip(REQUESTS, together, strict=True):
        _close(got, e.score(query, texts))
    assert e.score_requests([]) == []


def test_score_requests_applies_near_ties_re_scoring_per_request(tmp_path):
    model = build_tiny_cross_encoder(tmp_path / "m", arch="xlmr", seed=1, max_position=128)
    # exact_max_share 1: always the bfloat16 pass and its re-scoring, whatever share a crowded random model needs
    bf16 = CrossEncoderReranker(str(model), RerankerOptions(device="cpu", max_length=128, dtype="bfloat16",
                                                            exact_max_share=1.0)).load()
    assert bf16.info().exact_top > 0  # the near-ties path is on
    before = bf16.info().exact_rescored["calls"]
    together = bf16.score_requests(REQUESTS[:4])
    assert bf16.info().exact_rescored["calls"] == before + 4  # once per request, as score() does
    for (query, texts), got in zip(REQUESTS[:4], together, strict=True):
        alone = bf16.score(query, texts)  # bfloat16 noise differs with the batch; the near-ties are float32's
        assert len(got) == len(alone)


def test_a_batcher_is_a_reranker_and_only_wraps_engines_that_batch(bert_engine):
    b = BatchingReranker(bert_engine)
    assert isinstance(b, Reranker) and can_batch(bert_engine) and not can_batch(object())
    assert b.name == bert_engine.name and b.loaded and b.device_choice == bert_engine.device_choice
    assert b.info().details["batching"]["rounds"] == 0
    with pytest.raises(TypeError, match="serve it unwrapped"):
        BatchingReranker(object())  # type: ignore[arg-type]
    with pytest.raises(RerankerParameterError, match="rerank_batch_wait_ms"):
        BatchingReranker(bert_engine, max_wait_ms=500)
    with pytest.raises(RerankerParameterError, match="rerank_batch_tokens"):
        BatchingReranker(bert_engine, max_batch_tokens=0)
    b.close()


def test_concurrent_callers_get_their_own_scores_and_share_forward_passes(xlmr_engine):
    expected = [xlmr_engine.score(q, t) for q, t in REQUESTS]
    b = BatchingReranker(xlmr_engine, max_wait_ms=100)  # long enough for all 8 threads to arrive together
    jobs = REQUESTS + REQUESTS[:2]  # 8 callers, different queries and texts
    start = threading.Barrier(len(jobs))

    def call(i: int):
        start.wait()
        return b.score(*jobs[i])

    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(call, range(len(jobs))))
    for i, scores in enumerate(got):
        _close(scores, expected[i % len(REQUESTS)])
    stats = b.stats()
    non_empty = sum(1 for _, t in jobs if t)  # an empty request is answered without a round
    assert stats.requests == non_empty and stats.rounds < non_empty
    assert b.info().details["batching"]["mean_requests_per_round"] > 1
    b.close()


def test_a_round_keeps_to_the_token_budget_but_an_oversize_request_runs_alone(bert_engine):
    sizes = [bert_engine.prepare(q, t).n_tokens for q, t in REQUESTS if t]
    budget = max(sizes[1:]) + 1  # under the first request (it holds the long passage), over each of the others
    assert sizes[0] > budget
    b = BatchingReranker(bert_engine, max_wait_ms=100, max_batch_tokens=budget)
    seen: list[int] = []
    real = bert_engine.score_prepared

    class Spy:  # the engine, with each round's tokens written down
        def __getattr__(self, name):
            return getattr(bert_engine, name)

        def score_prepared(self, prepared):
            seen.append(sum(p.n_tokens for p in prepared))
            return real(prepared)

    b.engine = Spy()  # type: ignore[assignment]
    jobs = [r for r in REQUESTS if r[1]]
    start = threading.Barrier(len(jobs))

    def call(i: int):
        start.wait()
        return b.score(*jobs[i])

    with ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(call, range(len(jobs))))
    assert sum(seen) == sum(sizes)
    assert all(t <= budget for t in seen if t != sizes[0])  # only the oversize request exceeds it, alone
    stats = b.stats()
    assert stats.oversize == 1 and stats.max_round_tokens == sizes[0]
    b.close()


class _Failing:
    """The engine, but every round fails."""

    def __init__(self, engine):
        self.engine = engine

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def score_prepared(self, prepared):
        raise RuntimeError("the model broke")


def test_an_engine_error_reaches_every_caller_of_the_round(bert_engine):
    b = BatchingReranker(bert_engine, max_wait_ms=100)
    b.engine = _Failing(bert_engine)  # type: ignore[assignment]
    jobs = [r for r in REQUESTS if r[1]]
    start = threading.Barrier(len(jobs))

    def call(i: int):
        start.wait()
        try:
            b.score(*jobs[i])
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    with ThreadPoolExecutor(len(jobs)) as pool:
        assert list(pool.map(call, range(len(jobs)))) == ["the model broke"] * len(jobs)
    assert b.stats().failed_rounds == b.stats().rounds >= 1
    b.engine = bert_engine  # the worker survived: the next request is scored
    assert len(b.score(*jobs[0])) == len(jobs[0][1])
    b.close()


def test_a_bad_request_fails_alone_before_it_is_queued(bert_engine):
    b = BatchingReranker(bert_engine)
    with pytest.raises(TypeError, match="wrap it in a list"):
        b.score("query", "one string")
    assert b.stats().rounds == 0
    b.close()


def held_batcher(engine):
    """A batcher over `engine` whose rounds wait, once begun (`entered` set), until `release` is set: the
    requests that come meanwhile stay queued."""
    entered, release = threading.Event(), threading.Event()

    class Slow:
        def __getattr__(self, name):
            return getattr(engine, name)

        def score_prepared(self, prepared):
            entered.set()
            release.wait(30)
            return engine.score_prepared(prepared)

    b = BatchingReranker(engine, max_wait_ms=0)
    b.engine = Slow()  # type: ignore[assignment]
    return b, entered, release


def test_close_fails_queued_requests_and_later_ones(bert_engine):
    b, entered, release = held_batcher(bert_engine)
    q, texts = REQUESTS[3]
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(b.score, q, texts)
        assert entered.wait(30)
        queued = [pool.submit(b.score, q, texts) for _ in range(2)]
        while len(b._queue) < 2:  # both are queued behind the round in flight
            threading.Event().wait(0.01)
        closer = pool.submit(b.close)
        for f in queued:
            with pytest.raises(RerankerClosed, match="closed before this request was scored"):
                f.result(30)
        release.set()
        assert len(first.result(30)) == 1  # the round in flight finishes and is delivered
        closer.result(30)
    with pytest.raises(RerankerClosed, match="retry"):
        b.score(q, texts)
    assert b.closed


def test_a_drained_batcher_scores_what_was_queued_and_later_calls_alone(bert_engine):
    b, entered, release = held_batcher(bert_engine)
    q, texts = REQUESTS[0]
    expected = bert_engine.score(q, texts)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(b.score, q, texts)
        assert entered.wait(30)
        queued = [pool.submit(b.score, q, texts) for _ in range(2)]
        while len(b._queue) < 2:
            threading.Event().wait(0.01)
        closer = pool.submit(b.close, True)  # a model swapped out: what began on it finishes on it
        release.set()
        for f in [first, *queued]:
            _close(f.result(30), expected)
        closer.result(30)
    _close(b.score(q, texts), expected)  # after the swap, scored by the engine alone
    assert b.closed and b.stats().requests == 3
