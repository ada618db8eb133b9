"""Vocabulary learned from the search log, on a generated log whose pairs are known: real searches on a real index,
recorded with a clock the test sets, and real judgments. Exactly the planted synonym pairs, best bets and frequent
no-answer questions come out, with their counts; the noise (too late, another person, no thumbs-up, a first search
that worked, too rare, already known) does not; accepting writes the synonyms or a best bet, dismissing holds."""

from __future__ import annotations

import time

import pytest

from app.components import best_bets_store, control, make_search, vocabulary_store
from app.errors import KbError
from app.identity import Caller
from app.services.bestbets import BestBets
from app.services.events import EventLog
from app.services.request import SearchRequest
from app.services.suggestion_decisions import Decisions
from app.services.suggestions import differing, find, suggest
from retrieval.vocabulary import parse_vocabulary
from tests.conftest import serve

DOCS = {
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
    "regulation.md": "# 年休假规定\n\n职工累计工作已满1年不满10年的，年休假5天。\n",
    "travel.md": "# Travel expenses\n\nTravel expenses are claimed within 30 days of the trip's end.\n",
}
SYNONYMS = parse_vocabulary("", "trip, travel\n").synonyms  # what the administrators already wrote


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder):
    return serve(tmp_path_factory.mktemp("suggest"), embedder, DOCS, "none", recall_mode="lexical", cache_size=0)


class Log:
    """A generated search log: searches and judgments at the times the test says."""

    def __init__(self, settings, embedder, index, url):
        self.now = self.start = time.time() - 3 * 3600
        self.events = EventLog(url, b"k" * 32, clock=lambda: self.now).open()
        self.service = make_search(settings, embedder, index, events=self.events)

    def ask(self, who: str, query: str, at: float, verdict: str | None = None) -> None:
        """`who` asks `query` at `at` seconds into the log; `verdict`: like:FILE (thumbs-up on that document's
        passage), none ("none of these answers") or None."""
        self.now = self.start + at
        caller = Caller.member_of([], who=who, via="oidc")
        res = self.service.search(SearchRequest.of(query, threshold=0.0, top_n=10), caller)
        if verdict == "none":
            self.events.record_feedback(caller, res.query_id, None, False)
        elif verdict is not None:
            chunk = next(r.hit.chunk for r in res.results if r.hit.chunk.meta["source"].endswith(verdict[5:]))
            self.events.record_feedback(caller, res.query_id, chunk.chunk_id, True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.events.close()


@pytest.fixture
def log(corpus, embedder, tmp_path):
    settings = corpus.settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'kb.db'}"})
    with Log(settings, embedder, corpus.service.index, settings.database_url) as generated:
        yield generated, settings


def plant(log: Log) -> None:
    """The known evidence, and noise around it."""
    for i, who in enumerate(("ann", "bob", "cai")):  # 3 people: holiday → annual leave
        log.ask(who, "holiday allowance", 100 * i)  # no document says holiday or allowance: no answer
        log.ask(who, "annual leave allowance", 100 * i + 40, "like:leave.md")
    for i, who in enumerate(("dan", "eve")):  # 2 people: 公休假 → 年休假 (the first answered, judged useless)
        log.ask(who, "公休假有几天", 1000 + 100 * i, "none")
        log.ask(who, "年休假有几天", 1000 + 100 * i + 30, "like:regulation.md")
    for i, who in enumerate(("fay", "gus")):  # trip → travel: the synonyms join them already
        log.ask(who, "trip expenses deadline", 2000 + 100 * i, "none")
        log.ask(who, "travel expenses deadline", 2000 + 100 * i + 20, "like:travel.md")
    for i, who in enumerate(("hal", "ivy", "jon")):  # asked three times, never answered, never reformulated
        log.ask(who, "Parking permit?", 3000 + 50 * i)
    # noise: each alone says nothing
    log.ask("kim", "vacation allowance", 4000)
    log.ask("kim", "annual leave allowance", 4000 + 900, "like:leave.md")  # 15 minutes later: not a reformulation
    log.ask("lee", "pto allowance", 5000)
    log.ask("max", "annual leave allowance", 5010, "like:leave.md")  # someone else
    log.ask("ned", "furlough allowance", 6000)
    log.ask("ned", "annual leave allowance", 6030)  # no thumbs-up
    log.ask("oli", "annual leave days", 7000, "like:leave.md")  # the first worked
    log.ask("oli", "annual leave allowance", 7030, "like:leave.md")
    log.ask("pat", "sabbatical allowance", 8000)  # once only: too rare
    log.ask("pat", "annual leave allowance", 8030, "like:leave.md")


def doc(index, name: str) -> str:
    return next(d for d, r in index.documents.items() if r.source.endswith(name))


@pytest.mark.slow
def test_exactly_the_planted_pairs_bets_and_gaps_come_out_with_their_counts(log, corpus):
    generated, _ = log
    plant(generated)
    assert generated.events.flush()
    found = suggest(generated.events.history(30), SYNONYMS, BestBets())
    index = corpus.service.index
    assert [(s.kind, s.terms, s.doc_id, s.count, s.people, s.reason) for s in found] == [
        ("best_bet", ("Parking permit?",), None, 3, 3, "no answer"),
        ("best_bet", ("holiday allowance",), doc(index, "leave.md"), 3, 3, "reformulated"),
        ("synonyms", ("holiday", "annual leave"), None, 3, 3, "reformulated"),
        ("best_bet", ("trip expenses deadline",), doc(index, "travel.md"), 2, 2, "reformulated"),
        ("best_bet", ("公休假有几天",), doc(index, "regulation.md"), 2, 2, "reformulated"),
        ("synonyms", ("公休假", "年休假"), None, 2, 2, "reformulated"),
    ]
    holiday = next(s for s in found if s.kind == "synonyms" and "holiday" in s.terms)
    assert holiday.examples[0] == ("holiday allowance", "annual leave allowance")
    quick = suggest(generated.events.history(30), SYNONYMS, BestBets(), window_s=10)
    # every reformulation took longer than 10 s: only the questions asked three times without an answer are left
    assert [(s.terms, s.reason) for s in quick] == [(("Parking permit?",), "no answer"),
                                                    (("holiday allowance",), "no answer")]
    assert len({s.suggestion_id for s in found}) == len(found)


@pytest.mark.slow
def test_accepting_writes_the_synonyms_or_a_best_bet_and_dismissing_holds(log, corpus):
    generated, settings = log
    plant(generated)
    generated.events.flush()
    decisions = Decisions(control(settings), vocabulary_store(settings), best_bets_store(settings))
    vocabulary_store(settings).save("synonyms", "trip, travel\n", "admin")

    def now():
        vocab = vocabulary_store(settings).load()
        return suggest(generated.events.history(30), vocab.synonyms, best_bets_store(settings).load(),
                       decisions.dismissed())

    first = now()
    pair = next(s for s in first if s.terms == ("holiday", "annual leave"))
    assert decisions.accept(pair, "admin")["line"] == "holiday, annual leave"
    assert vocabulary_store(settings).text("synonyms")[0] == "trip, travel\nholiday, annual leave\n"
    bet = next(s for s in first if s.terms == ("公休假有几天",))
    written = decisions.accept(bet, "admin")
    [stored] = best_bets_store(settings).load().bets
    assert (stored.bet_id, stored.match, stored.phrases, stored.doc_id) == (written["bet_id"], "exact",
                                                                            ("公休假有几天",), bet.doc_id)
    gap = next(s for s in first if s.reason == "no answer")
    with pytest.raises(KbError) as exc:
        decisions.accept(gap, "admin")
    assert exc.value.kind == "validation" and "doc_id" in exc.value.message
    decisions.dismiss(gap.suggestion_id, "admin")
    decisions.dismiss(gap.suggestion_id, "admin")  # twice: the same
    assert decisions.dismissed() == [gap.suggestion_id]
    left = {s.terms for s in now()}
    assert left == {("holiday allowance",), ("trip expenses deadline",), ("公休假", "年休假")}
    with pytest.raises(KbError) as gone:
        find(now(), pair.suggestion_id)
    assert gone.value.kind == "not_found"


def test_only_one_run_of_a_few_words_is_a_synonym_pair():
    assert differing("holiday allowance", "annual leave allowance") == ("holiday", "annual leave")
    assert differing("公休假有几天", "年休假有几天") == ("公休假", "年休假")
    assert differing("holiday allowance rules", "annual leave allowance policy") is None  # two places
    assert differing("leave", "annual leave") is None  # a word added, nothing replaced
    assert differing("a", "one two three four five") is None  # a rewrite, not a term


@pytest.mark.slow
def test_kb_analytics_suggestions_then_accept_and_dismiss(log, corpus, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from app.cli import app
    from app.settings import get_settings

    generated, settings = log
    plant(generated)
    generated.events.flush()
    for name, value in {"KB_CONFIG": str(tmp_path / "none.toml"), "KB_INDEX_DIR": str(settings.index_dir),
                        "KB_EMBEDDER": "packaged:all-MiniLM-L6-v2", "KB_RERANKER": "none",
                        "KB_DATABASE_URL": settings.database_url, "KB_AUDIT_LOG": str(tmp_path / "audit.jsonl")}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        kb = CliRunner()
        listed = kb.invoke(app, ["analytics", "--suggestions", "--json"])
        assert listed.exit_code == 0, listed.output
        found = {tuple(x["terms"]): x for x in json.loads(listed.stdout)["suggestions"]}
        assert found[("holiday", "annual leave")]["count"] == 3
        table = kb.invoke(app, ["analytics", "--suggestions"])
        assert table.exit_code == 0 and "holiday" in table.stdout
        pair = found[("holiday", "annual leave")]["suggestion_id"]
        accepted = kb.invoke(app, ["vocabulary", "accept", pair])
        assert accepted.exit_code == 0 and "synonyms line 'holiday, annual leave' added" in accepted.stdout
        gap = found[("Parking permit?",)]["suggestion_id"]
        refused = kb.invoke(app, ["vocabulary", "accept", gap])
        assert refused.exit_code == 2 and "doc_id" in refused.output
        pinned = kb.invoke(app, ["vocabulary", "accept", gap, "--doc", doc(corpus.service.index, "travel.md")])
        assert pinned.exit_code == 0 and "best bet" in pinned.stdout
        bet = found[("公休假有几天",)]["suggestion_id"]
        assert kb.invoke(app, ["vocabulary", "dismiss", bet]).exit_code == 0
        again = kb.invoke(app, ["vocabulary", "dismiss", bet])
        assert again.exit_code == 2 and f"no suggestion {bet!r}" in again.output
        left = {tuple(x["terms"]) for x in json.loads(kb.invoke(app, ["analytics", "--suggestions", "--json"])
                                                        .stdout)["suggestions"]}
        assert left == {("holiday allowance",), ("trip expenses deadline",), ("trip", "travel"), ("公休假", "年休假")}
        actions = [json.loads(x)["action"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert actions == ["accept suggestion", "accept suggestion", "dismiss suggestion"]
    finally:
        get_settings.cache_clear()
