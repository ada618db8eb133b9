"""The Rerank playground under the API's /rerank limits and admission (issue 32, finding 7): a paste of too many
lines or too much text is refused naming the setting, and while every rerank slot of the process is taken (and no
one may wait) the playground says busy instead of queueing."""

from __future__ import annotations

from contextlib import ExitStack

from tests.app.ui.helpers import cards

LINES = ["Employees get twenty days of annual leave a year.", "Reset the VPN token in the portal.",
         "New employees receive a laptop.", "试用期员工主动离职的，应当提前三日通知公司。"]


def play(at, lines, query="how many days of annual leave"):
    at.switch_page("views/playground.py").run()
    at.text_input(key="kb_pg_query").input(query)
    at.text_area(key="kb_pg_candidates").input("\n".join(lines))
    next(b for b in at.button if b.label == "Rerank").click()
    return at.run()


def test_more_candidates_than_api_max_documents_are_refused(app_test, monkeypatch):
    monkeypatch.setenv("KB_API_MAX_DOCUMENTS", "3")
    at = play(app_test(), LINES)
    assert not at.exception
    assert any("4 documents; the limit is 3" in e.value and "api_max_documents" in e.value for e in at.error)
    assert not cards(at) and "kb_playground" not in at.session_state
    at = play(at, LINES[:3])  # within the limit: scored
    assert not at.error and len(cards(at)) == 3


def test_more_text_than_api_max_text_chars_or_a_long_query_is_refused(app_test, monkeypatch):
    monkeypatch.setenv("KB_API_MAX_TEXT_CHARS", "60")
    monkeypatch.setenv("KB_API_MAX_QUERY_CHARS", "40")
    at = play(app_test(), LINES[:2])
    assert any("the limit is 60" in e.value and "api_max_text_chars" in e.value for e in at.error)
    at = play(at, LINES[:1], query="q" * 41)
    assert any("41 characters; the limit is 40" in e.value for e in at.error)
    assert not cards(at)


def test_a_full_admission_answers_busy_instead_of_queueing(app_test, monkeypatch):
    from app.ui import resources

    monkeypatch.setenv("KB_API_MAX_QUEUE", "0")
    at = app_test()
    admission = resources.admission()  # the process's, shared by every session (st.cache_resource)
    with ExitStack() as held:
        for _ in range(admission.max_active):
            held.enter_context(admission.slot())  # every slot taken, e.g. by other people's reranks
        at = play(at, LINES)
        assert any("server busy" in e.value for e in at.error) and not cards(at)
    at = play(at, LINES)  # the slots are free again
    assert not at.error and len(cards(at)) == len(LINES)
