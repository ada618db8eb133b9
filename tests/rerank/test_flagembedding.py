"""FlagEmbedding's rerankers run here, through the same code path as the real models: the LLM rerankers
(bge-reranker-v2-gemma's GemmaForCausalLM, bge-reranker-v2-minicpm-layerwise's LayerWiseMiniCPMForCausalLM) behind
`LLMReranker`, and `FlagReranker` (the `flagembedding` peer of `kb bench rerank`) on a cross-encoder.

Tiny random-weight models with real architectures: these tests check that the scores are FlagEmbedding's own and
that our contract holds (raw score and its sigmoid, input order, windows), never what a random model ranks.
"""

from __future__ import annotations

import math

import pytest

from rerank.engines.factory import create_reranker
from rerank.errors import RerankerLoadError
from rerank.types import RerankerOptions
from tests.tiny_models import build_tiny_llm_reranker

QUERY = "试用期员工离职需要办理哪些手续？"
TEXTS = ["试用期员工应当提前三日通知用人单位，并办理工作交接。", "How do I reset my VPN token?",
         "员工可以报销差旅费用，须经直属领导批准。", "Interns may take annual leave with their manager's approval."]
OPTIONS = RerankerOptions(device="cpu", max_length=512, allow_remote_code=True)


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    return build_tiny_llm_reranker(tmp_path_factory.mktemp("llm") / "tiny-reranker-gemma", kind="gemma")


@pytest.fixture(scope="module")
def layerwise(tmp_path_factory):
    return build_tiny_llm_reranker(tmp_path_factory.mktemp("llm") / "tiny-reranker-layerwise", kind="layerwise",
                                   num_layers=3)


def test_flagembedding_imports_with_every_reranker_class():
    from FlagEmbedding import FlagLLMReranker, FlagReranker, LayerWiseFlagLLMReranker  # noqa: F401


@pytest.mark.slow
def test_gemma_reranker_scores_are_flagembeddings_own(gemma):
    from FlagEmbedding import FlagLLMReranker

    from rerank.engines.llm import LLMReranker

    engine = create_reranker(str(gemma), OPTIONS)
    assert isinstance(engine, LLMReranker)
    scored = engine.score(QUERY, TEXTS)
    assert engine.info().kind == "llm-reranker" and engine.device == "cpu"
    assert all(isinstance(raw, float) and math.isclose(score, 1 / (1 + math.exp(-raw)), rel_tol=1e-9)
               for raw, score in scored)
    reference = FlagLLMReranker(str(gemma), devices=["cpu"]).compute_score([(QUERY, t) for t in TEXTS])
    assert [raw for raw, _ in scored] == pytest.approx(reference, abs=1e-4)
    # one text alone gets the score it got among the others (input order kept, no cross-talk in a batch)
    assert engine.score(QUERY, [TEXTS[2]])[0][0] == pytest.approx(scored[2][0], abs=1e-4)


@pytest.mark.slow
def test_llm_reranker_reads_a_long_passage_as_windows(gemma):
    engine = create_reranker(str(gemma), RerankerOptions(device="cpu", max_length=200, long_passage="max"))
    long_text = " ".join(TEXTS * 30)
    windows_max = engine.score(QUERY, [long_text])[0][0]
    first = create_reranker(str(gemma), RerankerOptions(device="cpu", max_length=200, long_passage="first"))
    assert windows_max >= first.score(QUERY, [long_text])[0][0] - 1e-5  # the best window, not just the first


def test_layerwise_reranker_needs_remote_code_and_then_scores(layerwise):
    from FlagEmbedding import LayerWiseFlagLLMReranker

    with pytest.raises(RerankerLoadError, match="allow_remote_code"):
        create_reranker(str(layerwise), RerankerOptions(device="cpu", max_length=512)).load()
    engine = create_reranker(str(layerwise), OPTIONS)
    scored = engine.score(QUERY, TEXTS)
    assert engine.info().details["layerwise"] is True
    flag = LayerWiseFlagLLMReranker(str(layerwise), devices=["cpu"], cutoff_layers=[3])
    flag.model.config.use_cache = False
    reference = flag.compute_score([(QUERY, t) for t in TEXTS], cutoff_layers=[3])
    assert [raw for raw, _ in scored] == pytest.approx(reference, abs=1e-4)


def test_flag_reranker_peer_scores_the_cross_encoder_like_the_engine(tiny_xlmr):
    """`kb bench rerank --variants flagembedding` compares speed on the same model; this says it scores the same."""
    from FlagEmbedding import FlagReranker

    engine = create_reranker(str(tiny_xlmr), RerankerOptions(device="cpu", max_length=128))
    flag = FlagReranker(str(tiny_xlmr), devices="cpu", max_length=128)
    reference = flag.compute_score([(QUERY, t) for t in TEXTS])
    assert [raw for raw, _ in engine.score(QUERY, TEXTS)] == pytest.approx(reference, abs=1e-4)


def test_kb_rerank_runs_a_layerwise_reranker_when_the_setting_allows_its_code(layerwise, isolated_settings, tmp_path,
                                                                               monkeypatch):
    """The path a user takes: `kb rerank --reranker FOLDER`, refused until KB_RERANK_ALLOW_REMOTE_CODE=true."""
    import json

    from typer.testing import CliRunner

    from app.cli import app
    from app.settings import get_settings

    candidates = tmp_path / "candidates.txt"
    candidates.write_text("\n".join(TEXTS), encoding="utf-8")
    args = ["rerank", QUERY, "--candidates", str(candidates), "--reranker", str(layerwise), "--device", "cpu",
            "--json"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code != 0 and "KB_RERANK_ALLOW_REMOTE_CODE" in refused.output
    monkeypatch.setenv("KB_RERANK_ALLOW_REMOTE_CODE", "true")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(r["index"] for r in report["results"]) == list(range(len(TEXTS)))
    assert [r["rank"] for r in report["results"]] == [1, 2, 3, 4]
    raws = [r["raw_score"] for r in report["results"]]
    assert raws == sorted(raws, reverse=True)
