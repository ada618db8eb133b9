"""The Search page under a latency budget (AppTest, real index, real tiny reranker): cards the reranker did not
score say so, and the summary says how many were reranked. The meter's speed is pinned (1 token a second) so the
cut does not depend on the machine; the page's recall preview is replaced by the final results in the same run,
so AppTest sees the final page (the browser test watches the preview appear and go)."""

from __future__ import annotations

import pytest

from app.ui.components.cards import NOT_RERANKED
from rerank.budget import Throughput
from tests.app.ui.helpers import QUERY, cards, search


@pytest.fixture
def budgeted(app_test, monkeypatch):
    monkeypatch.setattr(Throughput, "rate", property(lambda self: 1.0))
    monkeypatch.setenv("KB_RERANK_BUDGET_MS", "1")
    return app_test


def test_cards_beyond_the_budget_are_labelled_and_the_summary_counts(budgeted):
    at = budgeted()
    at.slider(key="kb_threshold").set_value(0.99)
    at.slider(key="kb_top_n").set_value(3)
    at = search(at.run(), QUERY)
    assert not at.exception
    shown = cards(at)
    unscored = [c for c in shown if c["data-reranked"] == "false"]
    assert unscored, "threshold 0.99 and 3 reranked of more recalled leave room for recall-order results"
    assert all(NOT_RERANKED in c.select_one(".kb-band").text for c in unscored)
    assert all(c.select_one(".kb-fill") is None for c in unscored)  # no score bar without a score
    assert all(c.select_one(".kb-score").text != "—" for c in shown if c["data-reranked"] == "true")
    summary = [m.value for m in at.markdown if "reranked" in m.value]
    assert summary and summary[0].split("reranked ")[1].startswith("3 of ")
    assert any("within the 1 ms budget" in w.value for w in at.warning)


def test_without_a_budget_every_card_is_reranked(app_test):
    at = app_test()
    at.slider(key="kb_threshold").set_value(0.0)
    at = search(at.run(), QUERY)
    shown = cards(at)
    assert shown and all(c["data-reranked"] == "true" for c in shown)
    assert not any(NOT_RERANKED in c.text for c in shown)
    [summary] = [m.value for m in at.markdown if "reranked" in m.value]
    n = summary.split("reranked ")[1].split(" of ")
    assert n[0] == n[1].split()[0]  # reranked K of K
