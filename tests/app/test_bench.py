"""`kb bench rerank | search | ingest --json` on tiny models and small corpora: the documented keys are there and
the figures are consistent with what was run (no timing thresholds)."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from app.cli import app
from tests.tiny_models import build_tiny_cross_encoder

DOCS = {
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year. Requests go through the HR "
                "portal and need the manager's approval.\n\n## Carry-over\n\nUnused days expire at the end of March.\n",
    "vpn.md": "# VPN\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset. A lost token "
              "must be reported to the service desk the same day.\n\n## Travel\n\nAbroad, use the travel VPN profile.\n",
    "probation.md": "# 试用期\n\n试用期员工离职应提前三日通知公司。\n\n## 转正\n\n转正后须提前三十日书面通知。\n",
    "expenses.md": "# Expenses\n\nTravel expenses are reimbursed within five working days of submitting receipts. "
                   "Hotel costs above the city limit need the director's approval.\n",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny", arch="bert", seed=2,
                                    max_position=512)


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_bench_rerank_json(isolated_settings, corpus, tiny):
    pytest.importorskip("onnxruntime")
    result = CliRunner().invoke(app, ["bench", "rerank", "--reranker", str(tiny), "--corpus", str(corpus),
                                      "--k", "2,4", "--repeats", "2", "--variants", "naive,flagembedding,torch,onnx",
                                      "--max-length", "64", "--json"])
    report = _json(result)
    assert report["variants"] == ["naive", "flagembedding", "torch", "onnx"] and report["ks"] == [2, 4]
    assert report["repeats"] == 2
    assert {"cpu", "cores", "load_average", "date", "torch"} <= set(report["machine"])
    assert report["corpus_chunks"] >= 4 and report["parameters"] > 0
    for k in ("2", "4"):
        row = report["by_k"][k]
        assert row["pair_tokens"]["max"] <= 64
        for v in ("naive", "flagembedding", "torch", "onnx"):
            lat = row[v]["latency_ms"]
            assert lat["n"] == 2 and lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"]
            assert row[v]["pairs_per_s"] > 0
        # same model, same pairs, float32: both peers and the engine give the same scores and order
        for v in ("flagembedding", "torch", "onnx"):
            assert row[v]["ratio_vs_naive"] > 0
            assert row[v]["max_abs_score_diff"] < 1e-4 and row[v]["top10_identical"] is True
        for v in ("naive", "torch", "onnx"):
            assert row[v]["ratio_vs_flagembedding"] > 0
        best = report["best"][k]
        assert best["variant"] in ("torch", "onnx")
        assert best["ratio_vs_naive"] == row[best["variant"]]["ratio_vs_naive"]
    assert report["engine"]["onnx"]["backend"] == "onnx" and report["engine"]["torch"]["backend"] == "torch"
    assert "flagembedding" not in report["engine"]  # a peer, not a configuration of ours


def test_bench_rerank_table_names_both_peers(isolated_settings, corpus, tiny):
    result = CliRunner().invoke(app, ["bench", "rerank", "--reranker", str(tiny), "--corpus", str(corpus),
                                      "--k", "3", "--repeats", "1", "--variants", "flagembedding,torch",
                                      "--max-length", "64"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "vs naive" in result.output and "vs flagembedding" in result.output
    assert "K=3 flagembedding" in result.output and "fastest at the naive top-10 order: torch" in result.output


def test_bench_rerank_bfloat16_with_re_scoring(isolated_settings, corpus, tiny):
    result = CliRunner().invoke(app, ["bench", "rerank", "--reranker", str(tiny), "--corpus", str(corpus),
                                      "--k", "4", "--repeats", "1", "--variants", "torch-bf16+exact",
                                      "--max-length", "64", "--json"])
    report = _json(result)
    assert report["variants"] == ["naive", "torch-bf16+exact"]
    engine = report["engine"]["torch-bf16+exact"]
    assert engine["dtype"] == "bfloat16" and engine["exact_margin"] > 0
    # one call, by the bfloat16 pass with re-scoring or by float32 directly, and the report says which and why
    done = engine["exact_rescored"]
    assert done["calls"] + done["direct_calls"] == 1
    assert engine["exact_choice"]["path"] in ("bfloat16", "float32") and engine["exact_choice"]["reason"]
    row = report["by_k"]["4"]["torch-bf16+exact"]
    assert row["top10_identical"] is True and row["max_abs_score_diff"] < 0.05


def test_bench_rerank_errors(isolated_settings, tmp_path, tiny):
    result = CliRunner().invoke(app, ["bench", "rerank", "--reranker", str(tiny), "--corpus", str(tmp_path / "nope"),
                                      "--json"])
    assert result.exit_code == 2 and "nope" in result.output and "--corpus" in result.output
    result = CliRunner().invoke(app, ["bench", "rerank", "--reranker", str(tiny), "--k", "0"])
    assert result.exit_code == 2 and "--k" in result.output
    result = CliRunner().invoke(app, ["bench", "rerank", "--reranker", "none"])
    assert result.exit_code == 2 and "needs a reranker" in result.output


def test_bench_search_json(isolated_settings, tiny):
    result = CliRunner().invoke(app, ["bench", "search", "--sizes", "150,300", "--repeats", "3", "--top-k", "5",
                                      "--reranker", str(tiny), "--json"])
    report = _json(result)
    assert set(report["sizes"]) == {"150", "300"} and report["top_k"] == 5
    assert report["embedder"] and report["reranker"] == str(tiny)
    for row in report["sizes"].values():
        assert row["dense_index"] and row["build_s"] > 0
        for stage in ("embed", "recall", "rerank", "total"):
            assert row[stage]["n"] == 3 and row[stage]["p50"] <= row[stage]["p95"] <= row[stage]["p99"]
        assert row["rerank"]["min"] > 0  # five candidates were really reranked
        assert row["total"]["p50"] >= row["rerank"]["min"]


def test_bench_ingest_json(isolated_settings, corpus):
    report = _json(CliRunner().invoke(app, ["bench", "ingest", str(corpus), "--json"]))
    row = report["corpora"][str(corpus)]
    assert row["documents"] == len(DOCS) and row["skipped"] == 0
    assert row["chunks"] == row["chunks_counted_without_embedding"] >= len(DOCS)
    # seconds are rounded to 1 ms in the report: documents/s must fit that interval (a quiet machine ingests fast)
    lo, hi = row["seconds"] - 0.0005, row["seconds"] + 0.0005
    assert row["documents"] / hi * 0.99 <= row["documents_per_s"] <= row["documents"] / max(lo, 1e-9) * 1.01
    assert 0 < row["parse_chunk_share"] <= 1


def test_the_defaults_variant_is_the_engine_with_no_setting_given(monkeypatch):
    """`defaults` benchmarks what a CPU install builds when no KB_RERANK_* variable is set, whatever the
    benchmark's own batch size or precision options say."""
    from dataclasses import replace

    from app.quality.bench import variant_options
    from app.settings import Settings
    from rerank.types import RerankerOptions

    for name in [k for k in os.environ if k.startswith("KB_RERANK_") or k == "KB_DTYPE"]:
        monkeypatch.delenv(name)
    s = Settings()
    o = variant_options("defaults", replace(RerankerOptions(), batch_size=3, dtype="float32", backend="torch",
                                            exact_top=0))
    assert (o.device, o.backend, o.dtype, o.batch_size, o.exact_top, o.exact_max_share, o.quantize) == \
        ("cpu", s.rerank_backend, s.rerank_dtype or s.dtype, s.rerank_batch_size, s.rerank_exact_top,
         s.rerank_exact_max_share, s.rerank_quantize)
    assert (o.backend, o.exact_top) == ("auto", 10)
