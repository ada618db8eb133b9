"""Issue 31 on the Status page: how the reranker scores (backend and why, the last call's path under exact
re-scoring and why, the latency budget a search gets by default), under AppTest on the real app."""

from __future__ import annotations

import pytest

from rerank.budget import DEFAULT_CPU_BUDGET_MS
from tests.app.ui.helpers import QUERY, search


def _scoring(at) -> dict:
    [table] = [d.value for d in at.dataframe if "Why" in d.value.columns]
    return table.set_index("Item").to_dict("index")


def test_status_shows_the_backend_and_the_default_cpu_budget(app_test):
    at = app_test()
    at.switch_page("views/status.py").run()
    assert not at.exception
    assert any(h.value == "How the reranker scores" for h in at.subheader)
    rows = _scoring(at)
    assert rows["backend"]["Value"] == "torch" and "KB_RERANK_BACKEND" in rows["backend"]["Why"]
    assert rows["latency budget"]["Value"].startswith(f"{DEFAULT_CPU_BUDGET_MS} ms")
    assert "CPU default" in rows["latency budget"]["Why"] and "last call" not in rows


@pytest.mark.slow
def test_status_shows_the_path_of_the_last_bfloat16_call_and_why(app_test, monkeypatch):
    monkeypatch.setenv("KB_RERANK_DTYPE", "bfloat16")
    monkeypatch.setenv("KB_RERANK_BUDGET_MS", "0")
    at = search(app_test(), QUERY)
    at.switch_page("views/status.py").run()
    assert not at.exception
    rows = _scoring(at)
    # which path the random model's call took depends on its crowding; that one is shown, with its reason
    assert rows["last call"]["Value"] in ("bfloat16", "float32") and rows["last call"]["Why"]
    assert rows["latency budget"]["Value"] == "none: every candidate reranked"
    assert "KB_RERANK_BUDGET_MS" in rows["latency budget"]["Why"]
