"""bfloat16 on the CPU and int8, kept honest: near-ties in the top N are re-scored in float32 (rerank.exact), so the
top-N order is float32's; without re-scoring, a reduced copy serves only if it keeps the order on the check set."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerank.engines.cross_encoder import CrossEncoderReranker
from rerank.exact import margin_for, near_ties
from rerank.types import RerankerOptions
from rerank.validation.agreement import CHECK_QUERIES, top_k_order
from tests.tiny_models import build_tiny_cross_encoder, fit_to_separate, squeeze_logits

# queries the check set does not hold, over its passages and some of their own
MORE = [("How do I claim travel expenses?", CHECK_QUERIES[0][1] + ["Receipts are scanned in the expense tool."]),
        ("员工丢了电脑怎么办？", CHECK_QUERIES[2][1] + ["信息技术部负责远程锁定设备。"]),
        ("病假需要什么证明", CHECK_QUERIES[3][1])]


def _engine(path, **kw):
    return CrossEncoderReranker(str(path), RerankerOptions(device="cpu", max_length=128, **kw)).load()


def _raw(engine, query, passages):
    return [raw for raw, _ in engine.score(query, passages)]


@settings(max_examples=300, deadline=None)
@given(exact=st.lists(st.floats(-8, 8, allow_nan=False), min_size=1, max_size=60),
       noise=st.lists(st.floats(-1, 1), min_size=60, max_size=60), delta=st.floats(0, 0.5), top=st.integers(1, 12))
def test_re_scoring_the_near_ties_gives_the_exact_top_order(exact, noise, delta, top):
    fast = [e + delta * n for e, n in zip(exact, noise)]  # every fast score within delta of its exact score
    final = list(fast)
    for i in near_ties(fast, top, 2 * delta):
        final[i] = exact[i]
    assert top_k_order(final, top) == top_k_order(exact, top) or _tied(exact, top)


def _tied(exact, top):  # equal exact scores: either order is float32's
    best = sorted(exact, reverse=True)[:top + 1]
    return len(set(best)) < len(best)


def test_near_ties_only_where_fast_scores_are_close():
    assert near_ties([5.0, 3.0, 1.0, -1.0], top=2, margin=0.5) == []  # well apart: nothing to re-score
    assert near_ties([5.0, 4.9, 1.0, 0.95], top=2, margin=0.5) == [0, 1]  # the far tie is outside the top
    assert near_ties([5.0, 3.0, 2.8, 0.0], top=2, margin=0.5) == [1, 2]  # the tie across the top-2 boundary
    assert near_ties([1.0, 1.0], top=0, margin=1.0) == [] and near_ties([], top=10, margin=1.0) == []
    assert margin_for(0.01) == pytest.approx(0.04)  # 2 × (safety 2 × the check set's largest shift)


def test_bfloat16_with_re_scoring_ranks_like_float32_on_a_random_model(tmp_path):
    # random weights: candidates lie within bfloat16 noise of each other, the hardest case for the rule
    model = build_tiny_cross_encoder(tmp_path / "random", arch="xlmr", seed=1, max_position=128)
    # exact_max_share 1: the re-scoring itself under test, never the float32 shortcut a crowded model would take
    fp32, bf16 = _engine(model), _engine(model, dtype="bfloat16", exact_max_share=1.0)
    info = bf16.info()
    assert info.dtype == "bfloat16" and info.exact_top == 10 and info.exact_margin > 0
    assert bf16.cross_encoder.model.dtype.__str__() == "torch.bfloat16"
    for query, passages in CHECK_QUERIES + MORE:
        ref, got = _raw(fp32, query, passages), _raw(bf16, query, passages)
        assert top_k_order(got, 10) == top_k_order(ref, 10), query
        for i in top_k_order(ref, 10):  # what is shown carries float32 scores, or one within the margin
            assert abs(got[i] - ref[i]) <= info.exact_margin / 2
    stats = bf16.info().exact_rescored
    assert stats["calls"] == len(CHECK_QUERIES + MORE) and 0 < stats["rescored"] <= stats["candidates"]


@pytest.mark.slow
def test_a_trained_model_needs_few_re_scorings_and_keeps_bfloat16_alone(tmp_path):
    model = build_tiny_cross_encoder(tmp_path / "trained", arch="bert", seed=0, max_position=128, hidden_size=64,
                                     num_heads=4)
    assert fit_to_separate(model) < 0.05
    fp32, bf16 = _engine(model), _engine(model, dtype="bfloat16", exact_max_share=1.0)
    for query, passages in CHECK_QUERIES:
        assert top_k_order(_raw(bf16, query, passages), 10) == top_k_order(_raw(fp32, query, passages), 10)
    stats = bf16.info().exact_rescored
    assert stats["rescored"] < stats["candidates"] / 4  # candidates 1 logit apart: few near-ties
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no refusal
        pure = _engine(model, dtype="bfloat16", exact_top=0)
    assert pure.dtype == "bfloat16" and pure.info().agreement["top_k_identical"]
    assert pure.info().exact_rescored is None


def test_bfloat16_without_re_scoring_is_refused_when_it_changes_the_order(tmp_path):
    model = squeeze_logits(build_tiny_cross_encoder(tmp_path / "random", arch="xlmr", seed=1, max_position=128))
    fp32 = _engine(model)
    # float32 orders the check set's passages; bfloat16 rounds their logits to one value (input order)
    assert any(top_k_order(_raw(fp32, q, ps), 10) != list(range(10)) for q, ps in CHECK_QUERIES)
    with pytest.warns(RuntimeWarning, match="bfloat16 refused"):
        engine = _engine(model, dtype="bfloat16", exact_top=0)
    info = engine.info()
    assert info.dtype == "float32" and "bfloat16 failed its agreement check" in info.device_choice.reason
    assert not info.agreement["top_k_identical"] and "serving float32" in info.warning
    assert _raw(engine, *MORE[0]) == pytest.approx(_raw(fp32, *MORE[0]), abs=1e-6)


def test_int8_with_re_scoring_ranks_like_float32(tmp_path):
    pytest.importorskip("onnxruntime")
    model = build_tiny_cross_encoder(tmp_path / "random", arch="xlmr", seed=1, max_position=128)
    fp32 = _engine(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # served with re-scoring, no refusal
        int8 = _engine(model, backend="onnx", quantize=True)
    assert int8.info().quantized is True and int8.info().exact_margin > 0
    for query, passages in CHECK_QUERIES + MORE:
        assert top_k_order(_raw(int8, query, passages), 10) == top_k_order(_raw(fp32, query, passages), 10), query


def test_exact_top_is_checked():
    from rerank.errors import RerankerParameterError

    with pytest.raises(RerankerParameterError, match="exact_top=-1.*KB_RERANK_EXACT_TOP"):
        CrossEncoderReranker("some/model", RerankerOptions(exact_top=-1))
