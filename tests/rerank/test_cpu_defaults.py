"""Issue 31, the engine's own choices on a CPU: exact re-scoring never slower than float32 (a call whose re-scoring
would redo too many candidates is scored by float32 directly), backend auto (the faster exact CPU backend, timed
once per model and machine), and the default latency budget. No test depends on a timing or on what a random model
ranks: the timed choice is checked against the figures it recorded, and the crowded model is made so by
construction (`squeeze_logits`: bfloat16 rounds every logit to one value)."""

from __future__ import annotations

import json

import pytest

from rerank.budget import DEFAULT_CPU_BUDGET_MS, effective_budget_ms
from rerank.engines.cross_encoder import CrossEncoderReranker
from rerank.engines.exported import pick_backend
from rerank.engines.precision import PROBE_EVERY, NearTies
from rerank.errors import RerankerParameterError
from rerank.exact import rescore_limit, worth_reducing
from rerank.types import RerankerOptions
from rerank.validation.agreement import CHECK_QUERIES
from tests.tiny_models import build_tiny_cross_encoder, squeeze_logits


def _engine(path, **kw):
    return CrossEncoderReranker(str(path), RerankerOptions(device="cpu", max_length=128, **kw)).load()


def _raw(engine, query, passages):
    return [raw for raw, _ in engine.score(query, passages)]


# ---- the rule ------------------------------------------------------------------------------------------------------
def test_the_limit_is_the_set_share_lowered_to_the_measured_break_even():
    assert rescore_limit(0.5, None) == 0.5  # nothing measured yet: the set share
    assert rescore_limit(0.5, 0.25) == 0.5  # AMX bfloat16 (4× faster): break-even 0.75, the set share is lower
    assert rescore_limit(0.5, 0.6) == pytest.approx(0.4)  # a slower reduced pass: its break-even
    assert rescore_limit(0.5, 1.3) < 0  # not faster at all (emulated bfloat16): always float32
    assert rescore_limit(1.0, 1.3) == 1.0  # 1.0: never falls back
    with pytest.raises(ValueError, match="max_share"):
        rescore_limit(1.5, None)
    assert worth_reducing(5, 50, 0.5) and not worth_reducing(47, 50, 0.5)
    assert not worth_reducing(0, 10, -0.3) and worth_reducing(10, 10, 1.0) and not worth_reducing(0, 0, 0.5)


def test_near_ties_decides_per_call_from_the_re_scorings_it_has_seen():
    # the float32 scorer is not called by the decision; the engine tests below run real ones
    nt = NearTies(None, margin=0.1, top=10, max_share=0.5, expected=9.0, speed_ratio=0.3, what="bfloat16")
    assert not nt.reduce([10])  # 9 of 10 re-scored: float32 alone is faster
    assert nt.choice["path"] == "float32" and "float32 directly" in nt.choice["reason"] and "90%" in nt.choice["reason"]
    assert nt.reduce([50])  # the same 9 of 50 (18%): the reduced pass pays
    assert nt.choice["path"] == "bfloat16" and "within the limit 50%" in nt.choice["reason"]
    # a call that re-scores nothing pulls the estimate down (newest call weighs 0.3)
    nt.rescore([5.0, 3.0, 1.0], lambda again: [0.0] * len(again))
    assert nt.choice["expected_rescored_per_request"] == pytest.approx(0.7 * 9.0)
    # a reduced pass measured slower per token than float32 makes every call go to float32
    nt.observe_speed(reduced_s=2.0, reduced_tokens=100, exact_s=1.0, exact_tokens=100)
    assert nt.choice["speed_ratio"] == pytest.approx(0.3 * 2.0 + 0.7 * 0.3)
    slow = NearTies(None, 0.1, 10, 0.5, expected=0.0, speed_ratio=1.2)
    assert not slow.reduce([50]) and "costs 1.20× float32's" in slow.choice["reason"]
    assert NearTies(None, 0.1, 10, 1.0, expected=50.0, speed_ratio=2.0).reduce([50])  # 1.0: never falls back
    assert NearTies(None, 0.1, 10, 0.5).reduce([10])  # nothing measured: the first call measures


def test_a_crowded_call_teaches_the_share_and_float32_calls_probe_again_now_and_then():
    nt = NearTies(None, 0.1, 10, 0.5, expected=12.0, speed_ratio=0.3)  # the check set's dozen, all re-scored
    assert nt.reduce([50])  # 12 of 50 expected: the reduced pass
    nt.rescore([1.0] * 50, lambda again: [1.0] * len(again))  # all 50 within the margin: every one re-scored
    assert nt.choice["rescored_share"] == 1.0
    for _ in range(PROBE_EVERY - 1):  # max(R̂, Ŝ·50) = 50 of 50: float32
        assert not nt.reduce([50])
    assert nt.stats["calls"] == 1
    assert nt.reduce([50]) and "to measure again" in nt.choice["reason"]  # one probe after PROBE_EVERY - 1
    assert not NearTies(None, 0.1, 10, 0.5, expected=9.0, speed_ratio=0.3).reduce([10])  # 9 of 10, no share yet


def test_exact_max_share_is_checked():
    with pytest.raises(RerankerParameterError, match="exact_max_share.*KB_RERANK_EXACT_MAX_SHARE"):
        RerankerOptions(exact_max_share=1.5)
    with pytest.raises(RerankerParameterError, match="exact_max_share"):
        RerankerOptions(exact_max_share=True)


# ---- the engine ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """A model whose float32 logits differ by ~1e-3 while bfloat16 rounds them all to one value: every candidate
    is a near-tie, the case where the bfloat16 pass plus re-scoring costs more than float32 alone."""
    return squeeze_logits(build_tiny_cross_encoder(tmp_path_factory.mktemp("m") / "crowded", arch="xlmr", seed=1,
                                                   max_position=128))


def test_a_crowded_model_is_scored_by_float32_directly_and_says_why(crowded):
    fp32, bf16 = _engine(crowded), _engine(crowded, dtype="bfloat16")
    # the check set at load already showed every candidate re-scored: no call pays the bfloat16 pass
    for query, passages in CHECK_QUERIES:
        assert _raw(bf16, query, passages) == pytest.approx(_raw(fp32, query, passages), abs=1e-6)
    info = bf16.info()
    assert info.dtype == "bfloat16" and info.exact_choice["path"] == "float32"
    # 100% re-scored is above any limit (≤ the set 50%, lower where the load timing put the break-even lower)
    assert "float32 directly" in info.exact_choice["reason"] and "12 candidates (100%)" in info.exact_choice["reason"]
    assert info.exact_rescored["direct_calls"] == len(CHECK_QUERIES) and info.exact_rescored["calls"] == 0
    assert info.to_dict()["exact_choice"]["max_share"] == 0.5


def test_exact_max_share_one_keeps_the_reduced_pass_whatever_it_re_scores(crowded):
    bf16 = _engine(crowded, dtype="bfloat16", exact_max_share=1.0)
    query, passages = CHECK_QUERIES[0]
    bf16.score(query, passages)
    info = bf16.info()
    assert info.exact_choice["path"] == "bfloat16" and "never falls back" in info.exact_choice["reason"]
    assert info.exact_rescored["rescored"] == info.exact_rescored["candidates"] == len(passages)
    assert info.exact_rescored["direct_calls"] == 0


# ---- backend auto --------------------------------------------------------------------------------------------------
def test_pick_backend_takes_onnx_only_when_it_was_faster_at_the_same_order():
    figures = {"ratio": 1.3, "top10_identical": True, "pairs": 12}
    assert pick_backend(figures)[0] == "onnx" and "1.30×" in pick_backend(figures)[1]
    assert pick_backend({**figures, "ratio": 1.01})[0] == "torch"  # within the noise: no export to serve from
    assert pick_backend({**figures, "top10_identical": False})[0] == "torch"


def test_pick_backend_takes_the_fastest_exact_runtime_where_openvino_was_timed_too():
    figures = {"ratio": 1.3, "top10_identical": True, "pairs": 12, "openvino_ratio": 1.8,
               "openvino_top10_identical": True, "openvino_max_raw_diff": 1e-6}
    backend, reason = pick_backend(figures)
    assert backend == "openvino" and "ONNX Runtime float32 1.30×, OpenVINO float32 1.80×" in reason
    assert pick_backend({**figures, "openvino_ratio": 1.1})[0] == "onnx"  # slower than ONNX Runtime
    assert pick_backend({**figures, "openvino_top10_identical": False})[0] == "onnx"  # not exact: never served
    assert pick_backend({**figures, "openvino_max_raw_diff": 0.01})[0] == "onnx"  # logits beyond parity (bf16)
    assert pick_backend({**figures, "ratio": 1.0, "openvino_ratio": 1.02})[0] == "torch"  # within the noise
    assert pick_backend({**figures, "openvino_ratio": None})[0] == "onnx"  # could not be compiled


@pytest.mark.slow
def test_auto_times_the_backends_once_and_serves_the_one_it_measured_faster(tmp_path, tiny_bert):
    pytest.importorskip("onnxruntime")
    import shutil

    model = shutil.copytree(tiny_bert, tmp_path / "model")
    # float32 set: bfloat16 + exact, auto's third candidate on a CPU with AMX/AVX512-BF16, is not weighed here
    # (tests/rerank/test_auto_bfloat16.py)
    auto = CrossEncoderReranker(str(model), RerankerOptions(device="cpu", dtype="float32", max_length=64,
                                                            backend="auto")).load()
    choice = auto.info().backend_choice
    figures = choice["measured"]
    assert auto.backend == choice["backend"] == pick_backend(figures)[0]
    assert figures["top10_identical"] and figures["pairs"] == len(CHECK_QUERIES) * 3 and figures["ratio"] > 0
    assert choice["reason"] in auto.info().device_choice.reason
    manifest = json.loads((model / "kb-onnx" / "kb_export.json").read_text())
    assert manifest["speed"][choice["machine"]] == figures
    again = CrossEncoderReranker(str(model), RerankerOptions(device="cpu", dtype="float32", max_length=64,
                                                             backend="auto")).load()
    assert again.info().backend_choice["measured"] == figures  # recorded: not timed again
    torch = CrossEncoderReranker(str(model), RerankerOptions(device="cpu", max_length=64)).load()
    query, passages = CHECK_QUERIES[1]
    assert _raw(again, query, passages) == pytest.approx(_raw(torch, query, passages), abs=1e-5)  # both float32


def test_auto_keeps_torch_for_bfloat16(tiny_bert):
    engine = _engine(tiny_bert, backend="auto", dtype="bfloat16", exact_max_share=1.0)
    assert engine.backend == "torch" and engine.info().backend_choice["reason"] == "bfloat16 on a CPU runs on torch"


# ---- the default budget --------------------------------------------------------------------------------------------
def test_a_cpu_reranker_gets_the_default_budget_unless_one_is_set(bert_engine):
    assert bert_engine.device == "cpu"
    assert effective_budget_ms(None, bert_engine) == DEFAULT_CPU_BUDGET_MS
    assert effective_budget_ms(0, bert_engine) is None  # 0: every candidate, on any device
    assert effective_budget_ms(500, bert_engine) == 500
    assert effective_budget_ms(None, None) is None  # recall-only
