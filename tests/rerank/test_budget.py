"""The latency budget's arithmetic (pure), its meter, and `rerank_within` on a real tiny cross-encoder. Nothing
here asserts what the random model ranks, nor how fast it is: only what fits at a given speed."""

from __future__ import annotations

import threading

import pytest

from ingest.types import Chunk
from rerank.budget import Meters, Throughput, affordable, estimate_tokens, pair_tokens, rerank_within
from retrieval.types import Hit


# ---- affordable: pure -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [None, 0, -5])
def test_no_budget_reranks_everything(budget):
    assert affordable([100] * 50, budget, 10.0, floor=5) == 50
    assert affordable([100] * 50, budget, None, floor=5) == 50


def test_no_measurement_yet_reranks_only_the_floor_to_measure():
    assert affordable([100] * 50, 2000, None, floor=5) == 5
    assert affordable([100] * 3, 2000, None, floor=5) == 3  # K smaller than the floor
    assert affordable([], 2000, None, floor=5) == 0


def test_longest_prefix_that_fits():
    # 1000 tokens/s, 250 ms: 250 tokens. 100 + 100 fit, the third (100) would make 300.
    assert affordable([100, 100, 100, 10], 250, 1000.0, floor=1) == 2
    assert affordable([100, 100, 50, 10], 250, 1000.0, floor=1) == 3  # exactly 250 fits
    # a prefix, not the cheapest subset: a long second candidate stops it even if later ones are short
    assert affordable([100, 500, 10, 10, 10], 250, 1000.0, floor=1) == 1


def test_tiny_budget_still_reranks_the_floor():
    assert affordable([100] * 50, 1, 1000.0, floor=5) == 5
    assert affordable([100] * 50, 1, 1000.0, floor=0) == 0
    assert affordable([100] * 2, 1, 1000.0, floor=5) == 2  # K smaller than the floor


def test_huge_budget_takes_all_and_no_more():
    assert affordable([300] * 50, 600_000, 100.0, floor=5) == 50
    assert affordable([300] * 7, 10**9, 1e9, floor=50) == 7


def test_token_estimates():
    assert estimate_tokens("") == 1
    assert estimate_tokens("试用期离职") == 5  # one a CJK character
    assert estimate_tokens("reset the VPN token") == 5  # 4 words × 1.3
    hit = Hit(Chunk("c", "d", "body", n_tokens=40), 0.1, "dense")
    assert pair_tokens(7, hit) == 7 + 40 + 4
    bare = Hit(Chunk("c", "d", "reset the VPN token"), 0.1, "dense")  # no count: the text's estimate
    assert pair_tokens(7, bare) == 7 + estimate_tokens(bare.chunk.context_text()) + 4


# ---- the meter ----------------------------------------------------------------------------------------------------
def test_meter_starts_empty_and_ignores_empty_calls():
    m = Throughput()
    assert m.rate is None and m.observations == 0
    m.observe(0, 1.0)
    m.observe(100, 0.0)
    assert m.rate is None


def test_meter_converges_on_a_measured_speed():
    m = Throughput(alpha=0.3)
    m.observe(100, 1.0)  # first measurement taken as it is
    assert m.rate == pytest.approx(100.0)
    for _ in range(40):  # the machine got 5× faster: the weighted mean follows
        m.observe(1000, 2.0)
    assert m.rate == pytest.approx(500.0, rel=1e-4)
    assert m.observations == 41


def test_meter_is_thread_safe():
    m = Throughput()

    def work():
        for _ in range(500):
            m.observe(200, 0.5)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.observations == 2000 and m.rate == pytest.approx(400.0)


def test_one_meter_per_model():
    meters = Meters()
    assert meters.of("a") is meters.of("a") and meters.of("a") is not meters.of("b")
    with pytest.raises(ValueError, match="alpha"):
        Throughput(alpha=0)


# ---- rerank_within on a real tiny model -----------------------------------------------------------------------------
def _hits(n: int) -> list[Hit]:
    return [Hit(Chunk(f"c{i}", f"d{i}", f"passage number {i} about resetting a VPN token", n_tokens=12), 1.0 - i / 100,
                "dense") for i in range(n)]


def test_without_a_budget_every_hit_is_reranked_and_measured(bert_engine):
    meter = Throughput()
    done = rerank_within("reset my VPN token", _hits(9), bert_engine, meter)
    assert done.n == 9 and len(done.scored) == 9
    assert sorted(s.index for s in done.scored) == list(range(9))
    assert [s.rank for s in done.scored] == list(range(1, 10))
    assert meter.observations == 1 and meter.rate > 0 and done.tokens_per_s == meter.rate


def test_first_budgeted_search_probes_the_floor_then_spends_the_rest(bert_engine):
    meter = Throughput()
    done = rerank_within("reset my VPN token", _hits(12), bert_engine, meter, budget_ms=600_000, floor=3)
    # the probe (3) was timed, then the other 9 fit easily in ten minutes: two measured calls
    assert done.n == 12 and meter.observations == 2
    assert sorted(s.index for s in done.scored) == list(range(12))
    raw = [s.raw_score for s in done.scored]
    assert raw == sorted(raw, reverse=True)


def test_a_measured_slow_reranker_gets_only_the_best_recalled(bert_engine):
    meter = Throughput()
    meter.observe(10, 1.0)  # 10 tokens/s: a 1000 ms budget fits no 12+-token pair
    done = rerank_within("reset my VPN token", _hits(12), bert_engine, meter, budget_ms=1000, floor=4)
    assert done.n == 4
    assert sorted(s.index for s in done.scored) == [0, 1, 2, 3]  # the first four recalled, whatever their scores
    assert meter.observations == 2  # and the real call was measured


def test_a_known_speed_fits_the_arithmetic(bert_engine):
    hits = _hits(20)
    q = "reset my VPN token"
    cost = pair_tokens(estimate_tokens(q), hits[0])
    meter = Throughput()
    meter.observe(cost * 10, 1.0)  # ten pairs a second
    done = rerank_within(q, hits, bert_engine, meter, budget_ms=700, floor=1)
    assert done.n == 7
