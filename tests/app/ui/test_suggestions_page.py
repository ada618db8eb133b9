"""The Vocabulary page's Suggestions tab (AppTest over the real app): what the search log suggests is listed with its
count, Accept writes the synonym pair into the shared synonyms (audited) and the search uses it at once, Dismiss
hides a suggestion for good."""

from __future__ import annotations

import json

import pytest

from app.components import make_search, open_index, vocabulary_store
from app.identity import Caller
from app.services.events import EventLog
from app.services.request import SearchRequest
from app.settings import get_settings


def plant(embedder) -> None:
    """Two people: "holiday allowance" judged useless, then "annual leave allowance" liked on leave.md; and one
    question asked three times."""
    s = get_settings()
    events = EventLog(s.database_url, b"k" * 32).open()
    try:
        service = make_search(s, embedder, open_index(s, embedder), events=events)
        for who in ("ann", "bob"):
            caller = Caller.member_of([], who=who, via="oidc")
            first = service.search(SearchRequest.of("holiday allowance", threshold=0.0, top_n=10), caller)
            events.record_feedback(caller, first.query_id, None, False)
            second = service.search(SearchRequest.of("annual leave allowance", threshold=0.0, top_n=10), caller)
            leave = next(r.hit.chunk for r in second.results if r.hit.chunk.meta["source"].endswith("leave.md"))
            events.record_feedback(caller, second.query_id, leave.chunk_id, True)
        assert events.flush()
    finally:
        events.close()


def suggestion_lines(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith(("**Synonyms**", "**Best bet**"))]


@pytest.mark.slow
def test_suggestions_are_listed_accepted_into_the_synonyms_and_dismissed(app_test, embedder, tmp_path, monkeypatch):
    monkeypatch.setenv("KB_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    at = app_test()
    plant(embedder)
    at.switch_page("views/vocabulary.py").run()
    assert not at.exception
    lines = suggestion_lines(at)
    assert any("`holiday` = `annual leave`" in x and "2 times by 2 people" in x for x in lines), lines
    assert any(x.startswith("**Best bet** pin to `holiday allowance`: Annual leave") for x in lines), lines
    [accept] = [b for b in at.button if b.label == "Accept" and b.key.startswith("kb-sg-ok-")
                and b.key.endswith(_id_of(at, "holiday"))]
    accept.click()
    at.run()
    assert not at.exception and any("synonyms line 'holiday, annual leave' added" in x.value for x in at.success)
    assert vocabulary_store(get_settings()).text("synonyms")[0] == "holiday, annual leave\n"
    entry = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert entry["action"] == "accept suggestion" and entry["line"] == "holiday, annual leave"
    assert not any("`holiday` = `annual leave`" in x for x in suggestion_lines(at))

    next(b for b in at.button if b.label == "Dismiss").click()
    at.run()
    assert suggestion_lines(at) == [] and any(c.value == "No suggestions." for c in at.caption)
    assert json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])["action"] == "dismiss suggestion"


def _id_of(at, word: str) -> str:
    """The id of the synonyms suggestion naming `word` (the Accept buttons' keys end with it)."""
    from app.components import decisions
    from app.services.events import EventLog

    s = get_settings()
    events = EventLog(s.database_url, b"k" * 32).open()
    try:
        return next(x.suggestion_id for x in decisions(s).open(events.history(30))
                    if x.kind == "synonyms" and word in x.terms)
    finally:
        events.close()
