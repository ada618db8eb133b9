"""The latency budget through `SearchService`, the events store and `kb search`: real files ingested with MiniLM,
a tiny cross-encoder loaded from a folder. How fast the model is would make a test depend on the machine, so the
tests that need a cut pin the meter's speed (`slow`): the arithmetic then decides exactly how many are reranked;
the reranking itself is real. Nothing asserts what the random model ranks."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.components import make_search, open_index, search_defaults
from app.errors import KbError
from app.identity import OPERATOR, Caller
from app.services.events import EventLog
from app.services.request import SearchRequest
from app.services.search import QueryCache
from rerank.budget import Meters, Throughput

DOCS = {
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "laptop.md": "# Laptops\n\nNew employees receive a laptop from the IT desk on their first day.\n",
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n\n"
                "Unused leave expires at the end of March of the next year.\n",
    "salary.md": "---\nacl: [hr]\n---\n# Salary bands\n\nBand B3 pays between 60k and 80k a year.\n",
    "badge.md": "# Badges\n\nA lost badge is replaced at the reception desk.\n",
    "printer.md": "# Printers\n\nThe printer on floor two takes badge sign-in.\n",
}
Q = "how do I reset my VPN token"


@pytest.fixture
def service(corpus):
    """The loaded service with its own cache and meters, so tests do not see each other's."""
    assert corpus.service.reranker_error is None
    return replace(corpus.service, cache=QueryCache(64), meters=Meters())


@pytest.fixture
def slow(monkeypatch):
    """Every reranker measures 1 token a second: any budget below hours fits only the floor (top_n)."""
    monkeypatch.setattr(Throughput, "rate", property(lambda self: 1.0))


def preview_of(service, query: str, caller=OPERATOR, top_k: int = 10, top_n: int | None = None):
    """The recall stage's candidates as the app previews them."""
    plan = service.plan(SearchRequest.of(query, top_k=top_k, top_n=top_n if top_n is not None else top_k), caller)
    return service.preview(plan, service.recall(plan))


def recall_order(service, caller=OPERATOR, top_k: int = 10) -> list[str]:
    preview = preview_of(service, Q, caller, top_k)
    assert preview.preview and preview.reranked == 0 and all(r.score is None for r in preview.results)
    return [r.hit.chunk.chunk_id for r in preview.results]


def ids(results) -> list[str]:
    return [r.hit.chunk.chunk_id for r in results]


def test_budget_reranks_the_best_recalled_and_the_rest_follow_in_recall_order(service, slow):
    order = recall_order(service)
    res = service.search(SearchRequest.of(Q, top_k=10, top_n=2, threshold=0.0, rerank_budget_ms=1), OPERATOR)
    assert res.candidates == len(order) > 2
    assert res.reranked == 2  # the floor: the shown results are reranked
    assert all(r.score is not None and r.raw_score is not None and r.band for r in res.results)
    assert set(ids(res.results)) == set(order[:2])  # the two best recalled, in their reranked order
    assert ids(res.not_shown) == order[2:]  # exactly the others, in recall order, unscored
    assert all(r.score is None and r.raw_score is None and r.band is None for r in res.not_shown)
    assert any(f"reranked 2 of {len(order)} candidates within the 1 ms budget" in w for w in res.warnings)
    d = res.to_dict(include_hidden=True)
    assert d["reranked"] == 2 and d["candidates"] == len(order)
    assert [r["reranked"] for r in d["results"]] == [True, True]
    assert {r["reranked"] for r in d["not_shown"]} == {False}
    assert d["params"]["rerank_budget_ms"] == 1


def test_unreranked_results_fill_the_page_after_the_reranked_ones(service, slow):
    order = recall_order(service)
    res = service.search(SearchRequest.of(Q, top_k=10, top_n=4, threshold=0.99, rerank_budget_ms=1), OPERATOR)
    assert res.reranked == 4 < res.candidates
    scored = [r for r in res.results if r.score is not None]
    unscored = [r for r in res.results if r.score is None]
    assert res.results == scored + unscored  # reranked first, whatever passed the threshold
    assert len(unscored) == min(4 - len(scored), res.candidates - 4) > 0  # the page filled as far as K allows
    assert ids(unscored) == order[4:4 + len(unscored)]  # in recall order, from the first not reranked
    assert [r.rank for r in res.results] == list(range(1, len(res.results) + 1))
    assert len(scored) + len(res.below_threshold) == 4  # every reranked one is either shown or below


def test_budget_never_shows_what_the_caller_may_not_read(service, slow):
    public = Caller.member_of([])
    order = recall_order(service, public)
    res = service.search(SearchRequest.of("salary band B3", top_k=10, top_n=2, threshold=0.0, rerank_budget_ms=1), public)
    everything = res.results + res.not_shown + res.below_threshold
    assert everything and all("Band B3" not in r.hit.chunk.text for r in everything)
    preview = preview_of(service, "salary band B3", public)
    assert all("Band B3" not in r.hit.chunk.text for r in preview.results + preview.not_shown)
    assert len(order) == res.candidates
    hr = preview_of(service, "salary band B3", Caller.member_of(["hr"]))
    assert any("Band B3" in r.hit.chunk.text for r in hr.results)  # the same recall, the caller's groups


@pytest.mark.parametrize("budget", [None, 0, 600_000])
def test_without_a_binding_budget_everything_is_reranked(service, budget):
    res = service.search(SearchRequest.of(Q, top_k=10, top_n=10, threshold=0.0, rerank_budget_ms=budget), OPERATOR)
    assert res.reranked == res.candidates == len(res.results)
    assert all(r.score is not None for r in res.results)
    assert not any("budget" in w for w in res.warnings)
    assert all(r["reranked"] for r in res.to_dict()["results"])


def test_a_cut_result_is_never_cached_and_a_complete_one_answers_budgeted_searches(service, slow):
    def req(budget: int) -> SearchRequest:
        return SearchRequest.of(Q, top_k=10, top_n=2, threshold=0.0, rerank_budget_ms=budget)

    def is_cached(budget: int) -> bool:
        return service.plan(req(budget), OPERATOR).key in service.cache

    assert not is_cached(1)
    cut = service.search(req(1), OPERATOR)
    again = service.search(req(1), OPERATOR)
    assert cut.reranked == again.reranked == 2 and not again.cached
    assert not is_cached(1)
    full = service.search(req(0), OPERATOR)
    assert full.reranked == full.candidates and not full.cached
    assert is_cached(1)
    served = service.search(req(1), OPERATOR)  # complete, at once
    assert served.cached and served.reranked == served.candidates


def test_the_preview_is_neither_cached_nor_recorded(tmp_path, settings, embedder):
    log = EventLog(f"sqlite:///{tmp_path / 'events.db'}", b"k" * 32).open()
    try:
        svc = make_search(settings, embedder, open_index(settings, embedder), events=log)
        plan = svc.plan(SearchRequest.of(Q), OPERATOR)
        preview = svc.preview(plan, svc.recall(plan))
        assert preview.query_id == "" and len(svc.cache) == 0
        assert preview.to_dict()["preview"] is True
        log.flush()
        assert log.analytics()["searches"] == 0
    finally:
        log.close()


def test_budgeted_searches_are_recorded_and_take_feedback(tmp_path, settings, embedder, slow):
    log = EventLog(f"sqlite:///{tmp_path / 'events.db'}", b"k" * 32).open()
    alice = Caller.member_of([], who="alice@example.com", via="oidc")
    try:
        svc = make_search(settings, embedder, open_index(settings, embedder), events=log)
        res = svc.search(SearchRequest.of(Q, top_k=10, top_n=4, threshold=0.99, rerank_budget_ms=1), alice)
        assert res.reranked == 4 < res.candidates
        unscored = [r for r in res.results if r.score is None] or res.not_shown
        assert log.record_feedback(alice, res.query_id, unscored[0].hit.chunk.chunk_id, True) > 0
        log.flush()
        assert log.analytics()["searches"] == 1
    finally:
        log.close()


@pytest.mark.parametrize("bad", [-1, 600_001, 1.5, True])
def test_a_bad_budget_names_itself(service, bad):
    with pytest.raises(KbError) as exc:
        service.search(SearchRequest.of(Q, rerank_budget_ms=bad), OPERATOR)
    assert exc.value.kind == "validation" and "rerank_budget_ms" in str(exc.value)


def test_the_setting_is_the_default(settings, monkeypatch):
    from app.settings import Settings

    monkeypatch.setenv("KB_RERANK_BUDGET_MS", "2000")
    assert search_defaults(Settings(_env_file=None)).rerank_budget_ms == 2000
    assert search_defaults(settings).rerank_budget_ms is None
    monkeypatch.setenv("KB_RERANK_BUDGET_MS", "-3")
    with pytest.raises(ValueError, match="rerank_budget_ms"):
        Settings(_env_file=None)


@pytest.fixture
def cli_env(settings, monkeypatch):
    from app.settings import get_settings

    monkeypatch.setenv("KB_CONFIG", str(settings.index_dir.parent / "none.toml"))
    monkeypatch.setenv("KB_INDEX_DIR", str(settings.index_dir))
    monkeypatch.setenv("KB_EMBEDDER", settings.embedder)
    monkeypatch.setenv("KB_RERANKER", settings.reranker)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.slow
def test_cli_says_how_many_were_reranked(cli_env, slow):
    table = CliRunner().invoke(app, ["search", Q, "--budget-ms", "1", "--top-n", "3", "--top-k", "10",
                                     "--threshold", "0"])
    assert table.exit_code == 0, table.output
    assert "reranked: 3 of " in table.output and "within the 1 ms budget" in table.output
    js = CliRunner().invoke(app, ["search", Q, "--budget-ms", "1", "--top-n", "3", "--top-k", "10", "--json"])
    assert js.exit_code == 0, js.output
    out = json.loads(js.stdout.strip().splitlines()[-1])
    assert out["reranked"] == 3 and out["candidates"] > 3
    full = CliRunner().invoke(app, ["search", Q, "--top-k", "10", "--threshold", "0"])
    assert full.exit_code == 0 and "reranked: " in full.output
    bad = CliRunner().invoke(app, ["search", Q, "--budget-ms", "-5"])
    assert bad.exit_code != 0 and "rerank_budget_ms" in bad.output
