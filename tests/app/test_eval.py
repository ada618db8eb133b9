"""`kb eval` on a tiny BEIR folder, and the metrics on a hand-computed example."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.evaluate import doc_run, load_beir, score_run


def test_metrics_match_a_hand_computed_example():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}}
    run = {"q1": {"x": 0.9, "a": 0.8}, "q2": {"b": 0.7, "y": 0.5, "c": 0.4}}
    m = score_run(qrels, run, ["ndcg@10", "mrr@10", "recall@1"])
    ndcg_q1 = (1 / math.log2(3)) / 1.0
    ndcg_q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-4)
    assert m["mrr@10"] == pytest.approx((0.5 + 1.0) / 2, abs=1e-4)
    assert m["recall@1"] == pytest.approx((0 + 0.5) / 2, abs=1e-4)
    assert doc_run([("a", 0.2), ("b", 0.5), ("a", 0.9)]) == {"a": 0.9, "b": 0.5}


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
