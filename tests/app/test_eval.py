"""`kb eval` on a tiny BEIR folder, and the metrics on a hand-computed example."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.quality.evaluate import (
    EvalQuery,
    EvalSet,
    EvidenceNotFound,
    doc_run,
    evaluate_set,
    load_beir,
    open_dataset,
    ranked_run,
    score_run,
)
from app.services.library import IngestOptions
from rerank.types import RerankerOptions
from tests.tiny_models import build_tiny_cross_encoder

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"


def test_metrics_match_a_hand_computed_example():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}}
    run = {"q1": {"x": 0.9, "a": 0.8}, "q2": {"b": 0.7, "y": 0.5, "c": 0.4}}
    m = score_run(qrels, run, ["ndcg@10", "mrr@10", "recall@1", "hit@1", "hit@2"])
    ndcg_q1 = (1 / math.log2(3)) / 1.0
    ndcg_q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-4)
    assert m["mrr@10"] == pytest.approx((0.5 + 1.0) / 2, abs=1e-4)
    assert m["recall@1"] == pytest.approx((0 + 0.5) / 2, abs=1e-4)
    assert m["hit@1"] == pytest.approx(0.5) and m["hit@2"] == pytest.approx(1.0)  # q1's answer is 2nd, q2's 1st
    assert score_run(qrels, {"q1": {"a": 1.0}}, ["hit@1"]) == {"hit@1": 0.5}  # a query left out of the run: a miss
    assert doc_run([("a", 0.2), ("b", 0.5), ("a", 0.9)]) == {"a": 0.9, "b": 0.5}
    assert ranked_run(["b", "a", "b"]) == {"b": 3.0, "a": 2.0}  # by position; an id keeps its best place


@pytest.fixture
def beir(tmp_path):
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    docs = [("d1", "VPN", "Reset the VPN token in the self-service portal."),
            ("d2", "Leave", "Employees have twenty days of annual leave."),
            ("d3", "离职", "试用期员工离职应提前三日通知用人单位。")]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": i, "title": t, "text": x}, ensure_ascii=False)
                                                 for i, t, x in docs))
    queries = [("q1", "how to reset vpn token"), ("q2", "annual leave days"), ("q3", "试用期离职提前几天通知")]
    (root / "queries.jsonl").write_text("\n".join(json.dumps({"_id": i, "text": t}, ensure_ascii=False)
                                                  for i, t in queries))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n")
    return root


@pytest.mark.slow
def test_kb_eval_json(beir, isolated_settings):
    result = CliRunner().invoke(app, ["eval", str(beir), "--mode", "hybrid", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["queries"] == 3 and report["documents"] == 3
    assert report["metrics"]["ndcg@10"] == pytest.approx(1.0) and report["metrics"]["recall@10"] == 1.0
    assert load_beir(beir).qrels["q3"] == {"d3": 1}


def test_kb_eval_names_the_missing_file(tmp_path, isolated_settings):
    result = CliRunner().invoke(app, ["eval", str(tmp_path)])
    assert result.exit_code == 2 and "corpus.jsonl" in result.output


# ---- the sample set (data/samples): evidence passages judged as chunks ----------------------------------------
@pytest.fixture(scope="module")
def samples_root(tmp_path_factory):
    return tmp_path_factory.mktemp("samples-eval")


@pytest.fixture(scope="module")
def samples(samples_root, embedder):
    """The shipped sample set ingested exactly as `kb eval data/samples --index ROOT/index` does (ROOT/eval)."""
    return open_dataset(SAMPLES, embedder, samples_root / "eval", IngestOptions(512, 32))


@pytest.mark.slow
def test_sample_set_ingests_whole_and_every_evidence_maps(samples):
    rows = [json.loads(line) for line in (SAMPLES / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    assert samples.skipped == [] and samples.documents == 37 == len(samples.index.documents)
    assert len(samples.queries) == len(rows)
    by_id = {q.qid: q for q in samples.queries}
    for row in rows:  # open_dataset raised if any evidence was in no chunk; here: each lands in its own document
        q = by_id[row["_id"]]
        assert q.groups == tuple(row["groups"]) and q.answerable == row["answerable"]
        docs = {samples.index.chunks[cid].meta["source"] for cid in q.relevant}
        assert docs == {(SAMPLES / r["doc"]).resolve().as_posix() for r in row["relevant"]}
        for r in row["relevant"]:
            texts = [samples.index.chunks[cid].text for cid in q.relevant]
            assert any(" ".join(r["evidence"].split()) in " ".join(t.split()) for t in texts)
    assert len(samples.unanswerable) == sum(not r["answerable"] for r in rows) > 0


@pytest.mark.slow
def test_each_query_is_searched_with_its_own_groups(samples, embedder):
    hr_only = next(q for q in samples.queries if q.groups == ("hr",) and q.answerable)
    as_hr = EvalQuery("as-hr", hr_only.text, hr_only.relevant, ("hr",))
    as_employee = EvalQuery("as-employee", hr_only.text, hr_only.relevant, ())
    probe = EvalSet("probe", "samples", "chunk", [as_hr, as_employee], samples.index, samples.documents)
    res = evaluate_set(probe, embedder, "lexical", top_k=100)
    assert res["recall"]["metrics"]["recall@100"] == 0.5  # found for the hr asker, invisible to the employee


@pytest.mark.slow
def test_kb_eval_on_the_sample_set(samples, samples_root, isolated_settings):
    result = CliRunner().invoke(app, ["eval", str(SAMPLES), "--index", str(samples_root / "index"), "--mode",
                                      "hybrid", "--top-n", "5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["layout"] == "samples" and report["judged"] == "chunks" and report["skipped"] == []
    assert report["queries"] == len(samples.queries) and report["unanswerable"] == len(samples.unanswerable)
    m = report["metrics"]
    assert {"ndcg@10", "mrr@10", "recall@10", "recall@50", "recall@100", "hit@1", "hit@3", "hit@5"} <= set(m)
    assert m["hit@1"] <= m["hit@3"] <= m["hit@5"] and m["recall@10"] <= m["recall@50"] <= m["recall@100"]
    # MiniLM + BM25/jieba finds a passage that answers in the first five for most questions (0.93 when written).
    assert m["hit@5"] >= 0.85
    answers = report["answers"]["hybrid"]
    assert answers["unanswerable_shown"] == answers["unanswerable"]  # recall alone never says "no answer"
    assert report["latency_ms"]["hybrid"]["p50"] > 0
    # per language: every answerable question counted once, and Chinese hybrid is never below BM25 alone (the
    # English-only MiniLM cannot read it, so those questions are served by BM25)
    by = report["by_language"]
    rows = [json.loads(x) for x in (SAMPLES / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {lang: part["queries"] for lang, part in by.items()} == {
        lang: sum(1 for r in rows if r["answerable"] and r["lang"] == lang) for lang in ("en", "zh")}
    lexical = json.loads(CliRunner().invoke(app, ["eval", str(SAMPLES), "--index", str(samples_root / "index"),
                                                  "--mode", "lexical", "--json"]).stdout.strip().splitlines()[-1])
    assert by["zh"]["metrics"]["hit@5"] >= lexical["by_language"]["zh"]["metrics"]["hit@5"]


@pytest.fixture
def tiny_set(tmp_path):
    """A sample-layout folder: three documents, two answerable questions and one that nothing answers."""
    docs = tmp_path / "set" / "docs"
    docs.mkdir(parents=True)
    (docs / "vpn.md").write_text("# VPN\n\nTo reset a forgotten VPN token, open the self-service portal.\n")
    (docs / "leave.md").write_text("# Leave\n\nEmployees get twenty days of annual leave a year.\n")
    (docs / "laptop.md").write_text("# Laptops\n\nNew employees receive a laptop on their first day.\n")
    rows = [{"_id": "a1", "text": "reset vpn token", "groups": [], "answerable": True,
             "relevant": [{"doc": "docs/vpn.md", "evidence": "open the self-service   portal", "grade": 2}]},
            {"_id": "a2", "text": "annual leave days", "groups": [], "answerable": True,
             "relevant": [{"doc": "docs/leave.md", "evidence": "twenty days of annual leave", "grade": 2}]},
            {"_id": "u1", "text": "where is the canteen", "groups": [], "answerable": False, "relevant": []}]
    (tmp_path / "set" / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return tmp_path / "set", rows


@pytest.mark.slow
def test_reranked_answers_follow_the_threshold(tiny_set, tmp_path, embedder):
    folder, _ = tiny_set
    es = open_dataset(folder, embedder, tmp_path / "eval")
    assert [q.qid for q in es.unanswerable] == ["u1"] and all(len(q.relevant) == 1 for q in es.queries[:2])
    from rerank.engines.factory import create_reranker

    reranker = create_reranker(str(build_tiny_cross_encoder(tmp_path / "tiny", arch="bert", seed=1)), RerankerOptions(device="cpu")).load()
    everything = evaluate_set(es, embedder, "hybrid", top_k=3, reranker=reranker, threshold=0.0)
    assert everything["rerank"]["answers"]["unanswerable_shown"] == 1
    assert everything["rerank"]["metrics"]["recall@10"] == 1.0  # 3 chunks, all recalled and reranked
    nothing = evaluate_set(es, embedder, "hybrid", top_k=3, reranker=reranker, threshold=1.0)
    assert nothing["rerank"]["answers"] == {"threshold": 1.0, "unanswerable": 1, "unanswerable_shown": 0,
                                            "answerable": 2, "answerable_empty": 2}
    # With a calibrator the threshold applies to calibrated scores: here one that calls everything certain.
    certain = evaluate_set(es, embedder, "hybrid", top_k=3, reranker=reranker, threshold=1.0,
                           calibrate=lambda raw: 1.0)
    assert certain["rerank"]["answers"]["answerable_empty"] == 0


def test_evidence_that_matches_no_chunk_names_the_query(tiny_set, tmp_path, embedder):
    folder, rows = tiny_set
    rows[1]["relevant"][0]["evidence"] = "thirty days of annual leave"
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(EvidenceNotFound, match="query a2: evidence 'thirty days of annual leave'.*docs/leave.md"):
        open_dataset(folder, embedder, tmp_path / "eval")
    rows[1]["relevant"][0]["doc"] = "docs/missing.md"
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(EvidenceNotFound, match="query a2: relevant document docs/missing.md is not in the index"):
        open_dataset(folder, embedder, tmp_path / "eval")


@pytest.mark.slow
def test_kb_eval_applies_the_configured_calibration(tiny_set, tmp_path, isolated_settings, monkeypatch):
    from app.settings import get_settings
    from rerank.calibration import Calibrator

    folder, _ = tiny_set
    model = build_tiny_cross_encoder(tmp_path / "tiny", arch="bert", seed=1)
    args = ["eval", str(folder), "--reranker", str(model), "--top-k", "3", "--threshold", "0.99", "--json"]
    plain = json.loads(CliRunner().invoke(app, args).stdout.strip().splitlines()[-1])
    assert plain["answers"]["hybrid+rerank"]["unanswerable_shown"] == 0  # a random model's sigmoids stay far below
    # A calibrator that maps every raw score to ~1.0: the same threshold now lets everything through.
    Calibrator("platt", {"a": 0.0, "b": 10.0}, {"reranker": str(model)}).save(tmp_path / "cal.json")
    monkeypatch.setenv("KB_CALIBRATION", str(tmp_path / "cal.json"))
    get_settings.cache_clear()
    calibrated = json.loads(CliRunner().invoke(app, args).stdout.strip().splitlines()[-1])
    assert calibrated["calibration"] == str(tmp_path / "cal.json")
    assert calibrated["answers"]["hybrid+rerank"]["unanswerable_shown"] == 1
    assert calibrated["answers"]["hybrid+rerank"]["answerable_empty"] == 0
