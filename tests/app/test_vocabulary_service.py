"""The served vocabulary: `LiveSearch` swaps in new synonyms and a new user dictionary whole when their files
change (by hand or by its watcher), searches report what they also searched, the cache never serves a result of
the old vocabulary, the reranker's reading of the query is checked, and the CLI takes filters."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.components import live_search, make_search
from app.identity import OPERATOR
from app.services.live import LiveSearch
from app.services.request import SearchRequest
from app.services.vocabulary import check_words, read_words, save_words
from app.settings import Settings
from tests.conftest import index_docs
from tests.tiny_models import build_tiny_cross_encoder

DOCS = {
    "leave.md": "---\ndepartment: hr\n---\n# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
    "vpn.md": "---\ndepartment: it\n---\n# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal.\n",
    "oa.md": "---\ndepartment: it\n---\n# 审批\n\n飞书审批入口在工作台。\n",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("vocab")
    index_docs(root, embedder, DOCS)
    return root


def settings_for(home, tmp_path, reranker="none", **extra) -> Settings:
    return Settings(index_dir=home / "index", embedder="packaged:all-MiniLM-L6-v2", reranker=reranker,
                    synonyms=tmp_path / "synonyms.txt", user_dict=tmp_path / "userdict.txt", _env_file=None, **extra)


def live_for(s: Settings, embedder) -> LiveSearch:
    live = live_search(s, make_search(s, embedder, None))
    live.reload_index()
    return live


def test_new_synonyms_are_swapped_in_whole_and_the_cache_follows(home, tmp_path, embedder):
    live = live_for(settings_for(home, tmp_path), embedder)
    old = live.service
    first = old.search(SearchRequest.of("holiday", mode="lexical"), OPERATOR)
    assert first.also_searched == [] and not first.results
    assert not live.check_vocabulary()  # nothing changed

    (tmp_path / "synonyms.txt").write_text("holiday, annual leave\n", encoding="utf-8")
    assert live.vocabulary_changed() and live.check_vocabulary()
    again = live.service.search(SearchRequest.of("holiday", mode="lexical"), OPERATOR)
    assert again.also_searched == ["annual leave"] and not again.cached
    assert {r.hit.chunk.title for r in again.results} == {"Annual leave"}
    assert again.to_dict()["also_searched"] == ["annual leave"]
    # whoever still holds the old service (a search in flight) finishes on the old vocabulary
    assert old.search(SearchRequest.of("holiday", mode="lexical"), OPERATOR).also_searched == []


def test_a_new_user_dictionary_reanalyses_the_served_index(home, tmp_path, embedder):
    live = live_for(settings_for(home, tmp_path), embedder)
    before = live.service.index
    (tmp_path / "userdict.txt").write_text("飞书审批\n", encoding="utf-8")
    assert live.check_vocabulary()
    after = live.service.index
    assert after is not before and after.reanalyzed and after.version == before.version
    assert after.analyzer.fingerprint == live.vocabulary.analyzer.fingerprint != ""
    assert any("飞书审批" in toks for toks in after.lexical.tokens)
    assert not any("飞书审批" in toks for toks in before.lexical.tokens)  # the old one untouched
    assert live.library().opener.analyzer is live.vocabulary.analyzer  # the next ingest saves with it
    res = live.service.search(SearchRequest.of("飞书审批", mode="lexical"), OPERATOR)
    assert res.results[0].hit.chunk.title == "审批"


def test_the_watcher_picks_up_changes_and_survives_a_bad_file(home, tmp_path, embedder):
    live = live_for(settings_for(home, tmp_path, vocabulary_reload_s=0.1), embedder)
    live.watch()
    try:
        (tmp_path / "synonyms.txt").write_text("WFH, remote work\nonly-one\n", encoding="utf-8")
        deadline = time.monotonic() + 15
        while live.vocabulary.counts.get("synonyms") != 1:
            assert time.monotonic() < deadline, "the watcher did not reload the synonyms"
            time.sleep(0.05)
        assert any(":2:" in p for p in live.vocabulary.problems)
        (tmp_path / "synonyms.txt").unlink()
        (tmp_path / "synonyms.txt").mkdir()  # unreadable: reported, the engine keeps serving
        while not any("cannot be read" in p for p in live.vocabulary.problems):
            assert time.monotonic() < deadline, "the watcher did not notice the unreadable file"
            time.sleep(0.05)
        assert live.service.search(SearchRequest.of("VPN"), OPERATOR).results
    finally:
        live.stop()
    assert not live.watching


def test_reranker_that_cannot_read_the_query_is_flagged(home, tmp_path, embedder):
    english = build_tiny_cross_encoder(tmp_path / "bert", arch="bert", seed=3)  # MiniLM's English WordPiece
    bilingual = build_tiny_cross_encoder(tmp_path / "xlmr", arch="xlmr", seed=3)  # trained on Chinese too
    svc = make_search(settings_for(home, tmp_path, reranker=str(english)), embedder, live_for(
        settings_for(home, tmp_path), embedder).service.index)
    zh = svc.search(SearchRequest.of("员工可以享受年假吗"), OPERATOR)
    assert any(w.startswith(f"reranker {english} cannot read this query's Chinese") for w in zh.warnings)
    assert not any("cannot read" in w and "reranker" in w for w in svc.search(SearchRequest.of("annual leave"), OPERATOR).warnings)
    other = make_search(settings_for(home, tmp_path, reranker=str(bilingual)), embedder, svc.index)
    assert not any(w.startswith("reranker") for w in other.search(SearchRequest.of("员工可以享受年假吗"), OPERATOR).warnings)


def test_saving_words_is_whole_and_checked(tmp_path):
    path = tmp_path / "sub" / "synonyms.txt"
    assert read_words(path) == ""
    problems = save_words("synonyms", path, "年假, 年休假\r\nlonely\r\n")
    assert path.read_text(encoding="utf-8") == "年假, 年休假\nlonely\n"
    assert problems == [f"{path}:2: 'lonely' has one term; a set needs two or more, separated by commas "
                        "(年假, 年休假, annual leave); skipped"]
    assert check_words("user_dict", "飞书审批 x y\n", "d") and not check_words("user_dict", "飞书审批 3 n\n", "d")
    assert [p.name for p in path.parent.iterdir()] == ["synonyms.txt"]  # no temporary file left behind


def test_cli_filters(home, monkeypatch):
    monkeypatch.setenv("KB_CONFIG", str(home / "none.toml"))
    monkeypatch.setenv("KB_INDEX_DIR", str(home / "index"))
    monkeypatch.setenv("KB_EMBEDDER", "packaged:all-MiniLM-L6-v2")
    monkeypatch.setenv("KB_RERANKER", "none")
    from app.settings import get_settings

    get_settings.cache_clear()
    try:
        ok = CliRunner().invoke(app, ["search", "reset token", "--json", "--filter", "department=hr",
                                      "--mode", "lexical"])
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.stdout.strip().splitlines()[-1])["results"] == []  # the VPN page is IT's
        it = CliRunner().invoke(app, ["search", "reset token", "--json", "--filter", "department=it"])
        assert {r["title"] for r in json.loads(it.stdout.strip().splitlines()[-1])["results"]} >= {"VPN token"}
        unknown = CliRunner().invoke(app, ["search", "reset token", "--filter", "dept=it"])
        assert unknown.exit_code == 2 and "unknown filter key 'dept'" in unknown.output
        assert "department" in unknown.output
        bad = CliRunner().invoke(app, ["search", "reset token", "--filter", "updated>=soon"])
        assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
    finally:
        get_settings.cache_clear()
