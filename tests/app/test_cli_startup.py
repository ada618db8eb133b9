"""Issue 29: `kb` answers at once when it has no work to do. `--help` and a refused argument never pay for the heavy
libraries, checked by what a fresh interpreter has imported (no timing: benchmarks/cli_startup.py has the
figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "sentence_transformers", "faiss", "pymilvus", "streamlit")

# Runs in a fresh interpreter: each `kb` invocation of argv[1] (a JSON list of argument lists) through typer's
# CliRunner, then which HEAVY modules got imported. Prints {"runs": [[exit code, stdout, stderr]...], "heavy": [...]}.
PROBE = f"""
import json, sys
from typer.testing import CliRunner
from app.cli import app
runs = [CliRunner().invoke(app, args) for args in json.loads(sys.argv[1])]
print(json.dumps({{"runs": [[r.exit_code, r.stdout, r.stderr] for r in runs],
                  "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""


def _probe(tmp_path: Path, *invocations: list[str]) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", KB_CONFIG=str(tmp_path / "kb.toml"),
               KB_INDEX_DIR=str(tmp_path / "index"))
    env.pop("KB_RERANKER", None)
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(invocations)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_and_its_help_load_no_heavy_library(tmp_path):
    commands = ["ingest", "search", "rerank", "eval", "tune", "serve", "bench", "models", "analytics"]
    report = _probe(tmp_path, ["--help"], *([name, "--help"] for name in commands))
    assert [code for code, _, _ in report["runs"]] == [0] * (1 + len(commands))
    assert report["heavy"] == []


def test_bad_arguments_are_refused_with_exit_2_before_any_heavy_import(tmp_path):
    missing = str(tmp_path / "nonexistent")
    cases = {  # argv → what the one-line error must say
        ("search", ""): "query is empty",
        ("search", "   "): "query is empty",
        ("search", "vpn", "--top-k", "0"): "top_k must be between 1 and",
        ("search", "vpn", "--filter", "department"): "filter 'department' is not KEY=VALUE",
        ("ingest", missing): f"{missing}: no such file or folder",
        ("ingest", missing, missing + "-too"): f"{missing}-too",
        ("eval", missing): f"{missing}: no such folder",
        ("eval", "--judgments", missing): f"--judgments {missing}: no such file",
        ("rerank", "vpn", "--candidates", missing, "--reranker", "some/model"): f"--candidates {missing}: no such file",
    }
    report = _probe(tmp_path, *map(list, cases))
    for (argv, expected), (code, _, stderr) in zip(cases.items(), report["runs"]):
        assert code == 2 and expected in stderr and "Traceback" not in stderr, (argv, code, stderr)
    assert report["heavy"] == []
    assert not (tmp_path / "index").exists()  # refused before anything was opened


@pytest.mark.slow  # loads the embedder twice
def test_each_standing_warning_is_printed_once_per_command(tmp_path, isolated_settings, monkeypatch):
    """The embedder's fallback warning was said when it loaded and again with the result; the reranker's once per
    query of --queries."""
    from typer.testing import CliRunner

    from app.cli import app
    from app.settings import get_settings

    monkeypatch.setenv("KB_EMBEDDER", "example/no-such-embedder")  # not in models/ nor the cache: the fallback
    monkeypatch.setenv("KB_RERANKER", str(tmp_path / "no-such-reranker"))
    get_settings.cache_clear()
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "vpn.md").write_text("# VPN\n\nReset your VPN token in the self-service portal.\n")
    (tmp_path / "queries.txt").write_text("reset my VPN token\nself-service portal\n")
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(tmp_path / "kb")])
    assert ingested.exit_code == 0, ingested.output
    assert ingested.stderr.count("'example/no-such-embedder' unavailable") == 1
    found = runner.invoke(app, ["search", "--queries", str(tmp_path / "queries.txt"), "--mode", "lexical"])
    assert found.exit_code == 0, found.output
    assert found.stderr.count("'example/no-such-embedder' unavailable") == 1, found.stderr
    assert found.stderr.count("could not be loaded") == 1, found.stderr
