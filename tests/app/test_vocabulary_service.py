"""The served vocabulary: `LiveSearch` swaps in new synonyms and a new user dictionary whole when they are saved in
the shared database (checked by hand or by its watcher), searches report what they also searched, the cache never
serves a result of the old vocabulary, saving is whole, checked and refused when someone saved first, the files of
before are imported once, the reranker's reading of the query is checked, and the CLI takes filters."""

from __future__ import annotations

import json
import logging
import time

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.components import live_search, make_search, vocabulary_store
from app.errors import KbError
from app.identity import OPERATOR
from app.services.live import LiveSearch
from app.services.request import SearchRequest
from app.services.vocabulary import check_words
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
    """The module's index with a database of the test's own (the vocabulary lives there)."""
    return Settings(index_dir=home / "index", embedder="packaged:all-MiniLM-L6-v2", reranker=reranker,
                    synonyms=tmp_path / "synonyms.txt", user_dict=tmp_path / "userdict.txt",
                    database_url=f"sqlite:///{tmp_path / 'kb.db'}", _env_file=None, **extra)


def save(s: Settings, kind: str, text: str) -> list[str]:
    return vocabulary_store(s).save(kind, text, "test")[1]


def live_for(s: Settings, embedder) -> LiveSearch:
    live = live_search(s, make_search(s, embedder, None))
    live.reload_index()
    return live


def test_new_synonyms_are_swapped_in_whole_and_the_cache_follows(home, tmp_path, embedder):
    s = settings_for(home, tmp_path)
    live = live_for(s, embedder)
    old = live.service
    first = old.search(SearchRequest.of("holiday", mode="lexical"), OPERATOR)
    assert first.also_searched == [] and not first.results
    assert not live.check_vocabulary()  # nothing changed

    save(s, "synonyms", "holiday, annual leave\n")
    assert live.vocabulary.stamp == (None, None) and live.vocabulary_changed() and live.check_vocabulary()
    assert live.vocabulary.stamp == (None, 1)
    again = live.service.search(SearchRequest.of("holiday", mode="lexical"), OPERATOR)
    assert again.also_searched == ["annual leave"] and not again.cached
    assert {r.hit.chunk.title for r in again.results} == {"Annual leave"}
    assert again.to_dict()["also_searched"] == ["annual leave"]
    # whoever still holds the old service (a search in flight) finishes on the old vocabulary
    assert old.search(SearchRequest.of("holiday", mode="lexical"), OPERATOR).also_searched == []


def test_a_new_user_dictionary_reanalyses_the_served_index(home, tmp_path, embedder):
    s = settings_for(home, tmp_path)
    live = live_for(s, embedder)
    before = live.service.index
    save(s, "user_dict", "飞书审批\n")
    assert live.check_vocabulary()
    after = live.service.index
    assert after is not before and after.reanalyzed and after.version == before.version
    assert after.analyzer.fingerprint == live.vocabulary.analyzer.fingerprint != ""
    assert any("飞书审批" in toks for toks in after.lexical.tokens)
    assert not any("飞书审批" in toks for toks in before.lexical.tokens)  # the old one untouched
    assert live.library().opener.analyzer is live.vocabulary.analyzer  # the next ingest saves with it
    res = live.service.search(SearchRequest.of("飞书审批", mode="lexical"), OPERATOR)
    assert res.results[0].hit.chunk.title == "审批"


def test_the_watcher_picks_up_changes_and_survives_an_unreadable_database(home, tmp_path, embedder, caplog):
    s = settings_for(home, tmp_path, vocabulary_reload_s=0.1)
    live = live_for(s, embedder)
    live.watch()
    try:
        save(s, "synonyms", "WFH, remote work\nonly-one\n")
        deadline = time.monotonic() + 15
        while live.vocabulary.counts.get("synonyms") != 1:
            assert time.monotonic() < deadline, "the watcher did not reload the synonyms"
            time.sleep(0.05)
        assert any(p.startswith("synonyms:2:") for p in live.vocabulary.problems)
    finally:
        live.stop()
    assert not live.watching
    # the database cannot be read: the watcher says so once and keeps what it serves; it follows again after
    served, real = live.service, live.parts

    class Down:
        def __getattr__(self, name):
            return getattr(real, name)

        def vocabulary_stamp(self):
            raise KbError("not_ready", "the shared database is down")

    live.parts = Down()
    with caplog.at_level(logging.WARNING, logger="app.services.live"):
        assert not live.check_vocabulary() and not live.check_vocabulary()
    assert live.service is served and [r.message for r in caplog.records].count(
        "the shared database is down; what is served stays until it can be read") == 1
    live.parts = real
    save(s, "synonyms", "WFH, remote work\n")
    assert live.check_vocabulary() and live.vocabulary.problems == ()
    assert live.service.search(SearchRequest.of("VPN"), OPERATOR).results


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


def test_saving_words_is_whole_checked_and_never_overwrites_someone_elses(home, tmp_path):
    store = vocabulary_store(settings_for(home, tmp_path))
    assert store.text("synonyms") == ("", None)
    entry, problems = store.save("synonyms", "年假, 年休假\r\nlonely\r\n", "alice", expect=None)
    assert store.text("synonyms") == ("年假, 年休假\nlonely\n", 1) and entry.updated_by == "alice"
    assert problems == ["synonyms:2: 'lonely' has one term; a set needs two or more, separated by commas "
                        "(年假, 年休假, annual leave); skipped"]
    assert check_words("user_dict", "飞书审批 x y\n", "d") and not check_words("user_dict", "飞书审批 3 n\n", "d")
    store.save("synonyms", "年假, 年休假\n", "bob", expect=1)  # bob saved on top of version 1
    with pytest.raises(KbError) as stale:  # alice's page still shows version 1: refused, bob's words kept
        store.save("synonyms", "WFH, remote work\n", "alice", expect=1)
    assert stale.value.kind == "conflict" and "version 2, written by bob" in stale.value.message
    assert store.text("synonyms") == ("年假, 年休假\n", 2)
    with pytest.raises(KbError, match="kind must be one of user_dict, synonyms; got 'stopwords'"):
        store.save("stopwords", "a\n", "alice")


def test_the_files_of_before_are_imported_once(home, tmp_path, embedder, caplog):
    (tmp_path / "synonyms.txt").write_text("\ufeffholiday, annual leave\r\n", encoding="utf-8")
    (tmp_path / "userdict.txt").write_bytes("飞书审批\n".encode("gbk"))  # not UTF-8: said, not imported
    s = settings_for(home, tmp_path)
    with caplog.at_level(logging.WARNING, logger="app.services.vocabulary"):
        live = live_for(s, embedder)
    assert live.vocabulary.counts["synonyms"] == 1 and live.vocabulary.stamp == (None, 1)
    assert any("userdict.txt: cannot be read" in p for p in live.vocabulary.problems)
    assert [r.message for r in caplog.records if r.message.startswith("imported")] == [
        f"imported the synonyms from {tmp_path / 'synonyms.txt'} into {s.database_url}; that file is no longer "
        "read: edit it on the Vocabulary page or with `kb vocabulary`"]
    res = live.service.search(SearchRequest.of("holiday", mode="lexical"), OPERATOR)
    assert res.also_searched == ["annual leave"]
    # from now on the database is what counts: editing the old file changes nothing
    (tmp_path / "synonyms.txt").write_text("WFH, remote work\n", encoding="utf-8")
    assert not live.check_vocabulary() and vocabulary_store(s).text("synonyms") == ("holiday, annual leave\n", 1)
    (tmp_path / "userdict.txt").write_text("飞书审批\n", encoding="utf-8")  # fixed: imported at the next load
    assert live.reload_vocabulary().vocabulary.stamp == (1, 1) and live.vocabulary.problems == ()


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


def test_kb_vocabulary_show_and_set(home, tmp_path, monkeypatch):
    monkeypatch.setenv("KB_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("KB_INDEX_DIR", str(home / "index"))
    monkeypatch.setenv("KB_DATABASE_URL", f"sqlite:///{tmp_path / 'kb.db'}")
    monkeypatch.setenv("KB_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    from app.settings import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        (tmp_path / "words.txt").write_text("holiday, annual leave\nlonely\n", encoding="utf-8")
        saved = runner.invoke(app, ["vocabulary", "set", "synonyms", str(tmp_path / "words.txt"), "--json"])
        assert saved.exit_code == 0, saved.output
        body = json.loads(saved.stdout.strip().splitlines()[-1])
        assert body["version"] == 1 and body["problems"][0].startswith("synonyms:2:")
        piped = runner.invoke(app, ["vocabulary", "set", "user_dict"], input="飞书审批\n")
        assert piped.exit_code == 0 and "user_dict saved (version 1, 0 lines skipped)" in piped.stdout
        shown = runner.invoke(app, ["vocabulary", "show", "synonyms"])
        assert shown.exit_code == 0 and shown.stdout == "holiday, annual leave\nlonely\n"
        bad = runner.invoke(app, ["vocabulary", "set", "stopwords", str(tmp_path / "words.txt")])
        assert bad.exit_code == 2 and "kind must be one of user_dict, synonyms" in bad.output
        actions = [json.loads(x)["action"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert actions == ["edit synonyms", "edit user_dict"]
    finally:
        get_settings.cache_clear()
