"""`kb rerank` and `kb models …` through typer's CliRunner on a fresh app holding just those two groups."""

from __future__ import annotations

import json
import shutil

import pytest
import typer
from typer.testing import CliRunner

from app.cli import models, rerank


@pytest.fixture
def cli(tmp_path, monkeypatch):
    from app.settings import get_settings

    monkeypatch.setenv("KB_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("KB_RERANK_MAX_LENGTH", "64")
    monkeypatch.setenv("KB_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    get_settings.cache_clear()
    app = typer.Typer()
    rerank.register(app)
    models.register(app)
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args))
    get_settings.cache_clear()


@pytest.fixture
def candidates(tmp_path):
    path = tmp_path / "cands.txt"
    path.write_text("Employees get 20 days of annual leave.\n\nThe VPN must be used remotely.\n"
                    "<p>员工每年享有十五天带薪<b>年假</b>。</p>\n", encoding="utf-8")
    return path


def test_rerank_json_shape(cli, tiny_bert, candidates):
    result = cli("rerank", "annual leave days", "--candidates", str(candidates), "--json", "--reranker",
                 str(tiny_bert), "--device", "cpu", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["query"] == "annual leave days" and out["reranker"] == str(tiny_bert)
    assert out["device"] == "cpu" and out["dtype"] == "float32" and out["timings_ms"]["rerank"] > 0
    rows = out["results"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"rank", "index", "raw_score", "score", "band", "text"}
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    html_row = next(r for r in rows if r["index"] == 2)
    assert "<" not in html_row["text"] and "年假" in html_row["text"]


def test_rerank_table(cli, tiny_bert, candidates):
    result = cli("rerank", "annual leave days", "-c", str(candidates), "--reranker", str(tiny_bert))
    assert result.exit_code == 0, result.output
    assert "raw_score" in result.stdout and "VPN" in result.stdout


@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "0"], "batch_size=0"),
    (["--max-length", "100000"], "max_length=100000"),
    (["--device", "tpu"], "device='tpu'"),
    (["--long-passage", "median"], "long_passage='median'"),
    (["--reranker", "none"], "needs a reranker"),
])
def test_rerank_user_errors_exit_2_with_one_line(cli, tiny_bert, candidates, args, needle):
    base = ["rerank", "q", "--candidates", str(candidates), "--reranker", str(tiny_bert)]
    result = cli(*base, *args)
    assert result.exit_code == 2
    assert needle in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_rerank_missing_candidates_file(cli, tiny_bert, tmp_path):
    result = cli("rerank", "q", "--candidates", str(tmp_path / "none.txt"), "--reranker", str(tiny_bert))
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_rerank_unloadable_model_says_so_loudly(cli, candidates, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = cli("rerank", "q", "--candidates", str(candidates), "--reranker", "no-org/no-model")
    assert result.exit_code == 2
    assert "RERANKER NOT LOADED" in result.stderr and "no-org/no-model" in result.stderr


def test_models_check_ok_and_failure(cli, tiny_bert, tmp_path):
    ok = cli("models", "check", str(tiny_bert), "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert, broken)
    (broken / "model.safetensors").unlink()
    bad = cli("models", "check", str(broken))
    assert bad.exit_code == 1
    assert "FAIL" in bad.stdout and "model.safetensors" in bad.stdout and "fix:" in bad.stdout
    assert cli("models", "check", str(tmp_path / "nowhere")).exit_code == 2


def test_models_list_marks_active(cli, tiny_bert, tiny_xlmr, tmp_path, monkeypatch):
    from app.settings import get_settings

    models = tmp_path / "models"
    shutil.copytree(tiny_bert, models / "reranker_zh_v1")
    shutil.copytree(tiny_xlmr, models / "reranker_zh_v2")
    monkeypatch.setenv("KB_RERANKER", "reranker_zh_v2")
    get_settings.cache_clear()
    result = cli("models", "list", "--json")
    assert result.exit_code == 0, result.output
    entries = {e["name"]: e for e in json.loads(result.stdout)["models"]}
    assert entries["reranker_zh_v2"]["active_as"] == "reranker" and entries["reranker_zh_v1"]["active_as"] is None
    assert entries["reranker_zh_v1"]["kind"] == "cross-encoder"


def test_models_parity_without_gpu_exits_cleanly(cli, tiny_bert):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CPU-only behaviour")
    result = cli("models", "parity", "--reranker", str(tiny_bert), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["gpu_available"] is False and "no CUDA GPU" in out["message"]
