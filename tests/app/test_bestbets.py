"""Best bets on a real index and a real SQLite database: how a question calls for a bet (exact, contains, a synonym
group), what a new bet is refused for, the shared store (compare-and-set, seen by a second process's store), and the
search service pinning the passage above the results only for callers who may read it, never twice, never hiding a
result, recorded and judged like any result and counted in analytics."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from app.components import best_bets_store, make_search
from app.errors import KbError
from app.identity import OPERATOR, Caller
from app.services.bestbets import BestBet, BestBetsSource, BestBetsStore, new_bet
from app.services.control import ControlStore
from app.services.events import EventLog
from app.services.pinning import target
from app.services.request import SearchRequest
from retrieval.vocabulary import parse_vocabulary
from tests.conftest import serve

DOCS = {
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n\n## Carry-over\n\n"
                "Unused leave expires at the end of March of the next year.\n",
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "salary.md": "---\nacl: [hr]\n---\n# Salary bands\n\nBand B3 pays between 60k and 80k a year.\n",
    "regulation.md": "---\ndepartment: hr\n---\n# 年休假规定\n\n职工累计工作已满1年不满10年的，年休假5天。\n",
}
STAFF = Caller.member_of([], who="alice@example.com", via="oidc")
HR = Caller.member_of(["hr"], who="hana@example.com", via="oidc")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder):
    """One index for the module (recall-only, lexical: the order is BM25's, the same at every run)."""
    return serve(tmp_path_factory.mktemp("bestbets"), embedder, DOCS, "none", recall_mode="lexical", cache_size=64)


@pytest.fixture
def settings(corpus, tmp_path):
    """The corpus's settings with a database of this test's own (its best bets and events) and no reload delay."""
    return corpus.settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'kb.db'}",
                                              "vocabulary_reload_s": 0.0})


@pytest.fixture
def service(settings, corpus, embedder):
    return make_search(settings, embedder, corpus.service.index)


def doc(index, name: str) -> str:
    return next(d for d, r in index.documents.items() if r.source.endswith(name))


def ask(service, query: str, caller=OPERATOR, **knobs):
    return service.search(SearchRequest.of(query, threshold=0.0, top_n=10, **knobs), caller)


def add(settings, index, phrases, match="contains", label="recommended by HR", doc_id=None, chunk_id=None):
    doc_id, chunk_id = target(index, doc_id, chunk_id)
    return best_bets_store(settings).add(new_bet(phrases, match, label, doc_id, chunk_id, "test"), "test")


# ---- how a question calls for a bet --------------------------------------------------------------------------------
def bet(match: str, *phrases: str) -> BestBet:
    return new_bet(list(phrases), match, "", doc_id="d")


def test_exact_matches_the_whole_question_whatever_its_case_width_and_punctuation():
    b = bet("exact", "How many days of annual leave?")
    assert b.matches("how many days of ANNUAL leave") and b.matches("ＨＯＷ many days of annual leave？！")
    assert not b.matches("how many days of annual leave do I get")


def test_contains_matches_whole_latin_words_and_any_chinese_substring():
    b = bet("contains", "leave", "年假")
    assert b.matches("Annual LEAVE rules") and b.matches("我的年假还剩几天")
    assert not b.matches("when does the train leaves") and not b.matches("unleaveable")
    assert bet("contains", "annual leave").matches("how much annual leave?")


def test_synonyms_match_through_the_terms_a_question_is_also_searched_with():
    b = bet("synonyms", "年休假")
    vocab = parse_vocabulary("", "年假, 年休假, annual leave\n")
    query = "how many days of annual leave"
    assert not b.matches(query) and b.matches(query, vocab.synonyms.expand(query))
    assert not bet("contains", "年休假").matches(query, vocab.synonyms.expand(query))  # only `synonyms` widens


@pytest.mark.parametrize("args, field", [
    (([], "exact", ""), "phrases"), ((["  "], "exact", ""), "phrases"), (("leave", "exact", ""), "phrases"),
    (([1], "exact", ""), "phrases"), ((["?!"], "exact", ""), "phrases"), ((["a" * 201], "exact", ""), "phrases"),
    ((["leave"], "fuzzy", ""), "match"), ((["leave"], "exact", "x" * 81), "label"),
])
def test_a_bet_that_cannot_be_used_is_refused_naming_the_field(args, field):
    with pytest.raises(KbError) as exc:
        new_bet(*args, doc_id="d")
    assert exc.value.kind == "validation" and field in exc.value.message


def test_a_target_must_be_in_the_index(corpus):
    index = corpus.service.index
    chunk = next(c for c in index.chunks.values() if c.doc_id == doc(index, "vpn.md"))
    assert target(index, None, chunk.chunk_id) == (chunk.doc_id, chunk.chunk_id)
    assert target(index, doc(index, "vpn.md"), None) == (doc(index, "vpn.md"), None)
    for doc_id, chunk_id, kind, said in ((None, "nope", "not_found", "chunk_id"), ("nope", None, "not_found", "doc_id"),
                                         (None, None, "validation", "doc_id"),
                                         (doc(index, "leave.md"), chunk.chunk_id, "validation", "belongs to")):
        with pytest.raises(KbError) as exc:
            target(index, doc_id, chunk_id)
        assert exc.value.kind == kind and said in exc.value.message


# ---- the shared store --------------------------------------------------------------------------------------------
def test_the_store_adds_lists_and_removes_and_every_process_sees_the_same_bets(settings, corpus):
    index = corpus.service.index
    first = add(settings, index, ["vpn"], doc_id=doc(index, "vpn.md"))
    other = BestBetsStore(ControlStore(settings.database_url))  # another process's connection to the database
    assert [b.phrases for b in other.load().bets] == [("vpn",)]
    with pytest.raises(KbError) as dup:
        add(settings, index, ["vpn"], doc_id=doc(index, "vpn.md"), label="another label")
    assert dup.value.kind == "conflict" and first.bets[0].bet_id in dup.value.message
    second = add(settings, index, ["vpn"], match="exact", doc_id=doc(index, "vpn.md"))
    assert len(second.bets) == 2 and second.version == 2
    removed = other.remove(first.bets[0].bet_id, "test")
    assert removed.bet_id == first.bets[0].bet_id
    assert [b.match for b in best_bets_store(settings).load().bets] == ["exact"]
    with pytest.raises(KbError) as gone:
        other.remove(first.bets[0].bet_id, "test")
    assert gone.value.kind == "not_found" and "kb bestbets list" in gone.value.message


def test_concurrent_changes_are_each_applied_never_lost(settings, corpus):
    index = corpus.service.index
    doc_id = doc(index, "leave.md")
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            BestBetsStore(ControlStore(settings.database_url)).add(new_bet([f"q{i}"], "exact", "", doc_id), "t")
        except KbError as exc:  # a refusal is allowed (said, nothing half-written); a lost write is not
            errors.append(exc)

    best_bets_store(settings).load()  # the table made first: this test is about the entry, not the schema
    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = {b.phrases[0] for b in best_bets_store(settings).load().bets}
    assert all(e.kind == "conflict" for e in errors), [e.message for e in errors]
    assert len(stored) == 6 - len(errors) and len(stored) >= 3


def test_a_serving_process_follows_changes_and_keeps_its_bets_when_the_database_is_gone(settings, corpus, tmp_path):
    control = ControlStore(settings.database_url)  # this process's own connection, closed below
    source = BestBetsSource(BestBetsStore(control), reload_s=0.0)
    assert source.current().bets == ()
    add(settings, corpus.service.index, ["vpn"], doc_id=doc(corpus.service.index, "vpn.md"))
    seen = source.current()
    assert len(seen.bets) == 1
    control.close()
    (tmp_path / "kb.db").write_bytes(b"not a database" * 100)
    assert source.current() == seen  # the database cannot be read: the bets read last stay in use


# ---- pinned above the results ------------------------------------------------------------------------------------
def test_a_pinned_passage_comes_first_with_its_label_and_is_not_shown_twice(settings, service, corpus):
    index = corpus.service.index
    vpn = next(c for c in index.chunks.values() if c.doc_id == doc(index, "vpn.md"))
    plain = ask(service, "reset the vpn token")
    assert vpn.chunk_id in [r.hit.chunk.chunk_id for r in plain.results] and plain.pinned == []
    add(settings, index, ["vpn"], label="recommended by IT", chunk_id=vpn.chunk_id)
    res = ask(service, "reset the VPN token")
    assert [(p.label, p.chunk.chunk_id) for p in res.pinned] == [("recommended by IT", vpn.chunk_id)]
    ids = [r.hit.chunk.chunk_id for r in res.results]
    assert vpn.chunk_id not in ids  # once, pinned
    assert ids == [c for c in (r.hit.chunk.chunk_id for r in plain.results) if c != vpn.chunk_id]  # nothing hidden
    assert [r.rank for r in res.results] == list(range(1, len(ids) + 1))
    body = res.to_dict()
    assert body["best_bets"][0]["label"] == "recommended by IT" and body["best_bets"][0]["chunk_id"] == vpn.chunk_id
    again = ask(service, "reset the VPN token")
    assert again.cached and [p.bet_id for p in again.pinned] == [p.bet_id for p in res.pinned]


def test_only_callers_who_may_read_the_document_see_its_bet(settings, service, corpus):
    index = corpus.service.index
    add(settings, index, ["salary", "pay"], doc_id=doc(index, "salary.md"), label="recommended by HR")
    assert [p.chunk.doc_id for p in ask(service, "what is my pay", HR).pinned] == [doc(index, "salary.md")]
    for caller in (STAFF, OPERATOR.narrowed(["it"])):  # an employee; an admin viewing as someone else
        res = ask(service, "what is my pay", caller)
        assert res.pinned == [] and "Salary" not in str(res.to_dict())
    assert ask(service, "what is my pay", OPERATOR).pinned  # the unrestricted operator


def test_a_document_bet_shows_its_first_passage_and_respects_the_filters(settings, service, corpus):
    index = corpus.service.index
    add(settings, index, ["年休假"], match="synonyms", doc_id=doc(index, "regulation.md"), label="HR 推荐")
    service = replace(service, vocabulary=parse_vocabulary("", "年假, 年休假, annual leave\n"))
    res = ask(service, "how many days of annual leave")
    [pin] = res.pinned
    assert pin.chunk.doc_id == doc(index, "regulation.md") and "年休假" in pin.chunk.text and pin.match == "synonyms"
    assert ask(service, "how many days of annual leave", filters=["department=hr"]).pinned
    assert not ask(service, "how many days of annual leave", filters=["format=txt"]).pinned
    assert not ask(service, "how many days of sick days").pinned
    assert not service.unrecorded().search(SearchRequest.of("annual leave", threshold=0.0), OPERATOR).pinned


def test_a_removed_or_deleted_target_shows_nothing(settings, service, corpus):
    index = corpus.service.index
    bets = add(settings, index, ["token"], doc_id=doc(index, "vpn.md"))
    assert ask(service, "token").pinned
    best_bets_store(settings).remove(bets.bets[0].bet_id, "test")
    assert not ask(service, "token").pinned
    best_bets_store(settings).add(new_bet(["token"], "contains", "", "gone-doc"), "test")
    assert not ask(service, "token").pinned  # its document is no longer in the index


def test_a_pin_is_recorded_judged_and_counted_in_analytics(settings, corpus, embedder, tmp_path):
    index = corpus.service.index
    events = EventLog(settings.database_url, b"k" * 32).open()
    try:
        service = make_search(settings, embedder, index, events=events)
        add(settings, index, ["leave"], doc_id=doc(index, "leave.md"), label="recommended by HR")
        res = ask(service, "annual leave", STAFF)
        pin = res.pinned[0].chunk.chunk_id
        events.record_feedback(STAFF, res.query_id, pin, True)
        second = ask(service, "carry over leave", STAFF)
        events.record_feedback(STAFF, second.query_id, second.pinned[0].chunk.chunk_id, False)
        ask(service, "vpn token", STAFF)  # no bet
        assert events.flush()
        report = events.analytics(30)
        [row] = report["best_bets"]
        assert row["bet_id"] == res.pinned[0].bet_id and row["label"] == "recommended by HR"
        assert (row["shown"], row["up"], row["down"]) == (2, 1, 1)
        assert report["searches"] == 3 and report["feedback"]["up"] == 1
    finally:
        events.close()
