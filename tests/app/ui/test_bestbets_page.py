"""Best bets in the app (AppTest over the real app): an admin pins a document on the Vocabulary page (audited, stored
in the shared database), the Search page shows it first with its label and takes thumbs on it, the Analytics page
counts it, Remove takes it away; a signed-in employee outside the document's group never sees it and cannot open
the Vocabulary page."""

from __future__ import annotations

import json
import uuid

import jwt
import pytest

from app.components import best_bets_store
from app.identity import OPERATOR
from app.services.bestbets import new_bet
from app.settings import get_settings
from tests.app.ui.helpers import cards, search, set_threshold
from tests.oidc_provider import CLIENT_ID


def pinned_cards(at) -> list[str]:
    return [h.value for h in at.html if "kb-pinned" in h.value and "kb-card" in h.value]


def doc_of(name: str) -> str:
    from app.components import read_index

    index = read_index(get_settings())
    return next(d for d, r in index.documents.items() if r.source.endswith(name))


@pytest.mark.slow
def test_an_admin_pins_a_document_people_see_it_first_judge_it_and_it_can_be_removed(app_test, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("KB_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("KB_RECALL_MODE", "lexical")
    at = app_test(reranker="none")
    at.switch_page("views/vocabulary.py").run()
    assert not at.exception
    leave = doc_of("leave.md")
    at.text_area(key="kb_bb_phrases").input("annual leave\nholiday")
    at.selectbox(key="kb_bb_doc").set_value(leave)
    at.text_input(key="kb_bb_label").input("recommended by HR")
    next(b for b in at.button if b.label == "Pin").click()
    at.run()
    assert not at.exception and any("Pinned" in s.value for s in at.success)
    [bet] = best_bets_store(get_settings()).load().bets
    assert (bet.doc_id, bet.phrases, bet.label, bet.match) == (leave, ("annual leave", "holiday"),
                                                               "recommended by HR", "contains")
    entry = json.loads((tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert entry["action"] == "add best bet" and entry["bet_id"] == bet.bet_id and entry["outcome"] == "done"

    at.switch_page("views/search.py").run()
    at = search(set_threshold(at, 0.0), "how much annual leave do I get")
    [card] = pinned_cards(at)
    assert "recommended by HR" in card and "twenty days" in card
    first_html = next(h.value for h in at.html if "kb-card" in h.value)
    assert "kb-pinned" in first_html  # above every result
    assert len(at.get("feedback")) == len(cards(at)) + 1  # thumbs on the pinned card too

    at.switch_page("views/analytics.py").run()
    assert not at.exception
    [table] = [d.value for d in at.dataframe if "bet_id" in d.value.columns]
    assert table[["label", "phrases", "shown"]].values.tolist() == [["recommended by HR", "annual leave | holiday", 1]]

    at.switch_page("views/vocabulary.py").run()
    next(b for b in at.button if b.label == "Remove").click()
    at.run()
    assert not at.exception and best_bets_store(get_settings()).load().bets == ()
    assert json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])["action"] == "remove best bet"
    at.switch_page("views/search.py").run()
    assert pinned_cards(search(at, "how much annual leave do I get")) == []


@pytest.fixture
def employee_app(app_test, oidc_provider, monkeypatch):
    """The app signed in (test OIDC provider) as a new user of `groups`."""

    def start(groups: list[str]):
        for name, value in {"KB_AUTH_PROVIDER_URL": oidc_provider.issuer, "KB_AUTH_CLIENT_ID": CLIENT_ID,
                            "KB_AUTH_CLIENT_SECRET": "s3cret", "KB_AUTH_COOKIE_SECRET": "c" * 64,
                            "KB_AUTH_RECHECK_S": "3600", "KB_RECALL_MODE": "lexical"}.items():
            monkeypatch.setenv(name, value)
        sub = f"u-{uuid.uuid4().hex[:8]}"
        oidc_provider.set_claims(sub, {"email": f"{sub}@example.com", "name": sub, "groups": groups})
        tokens = oidc_provider.tokens(sub)
        claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
        at = app_test(reranker="none")
        at.user = {"is_logged_in": True, **claims, "tokens": {"access": tokens["access_token"]}}
        return at.run()

    return start


@pytest.mark.slow
def test_someone_outside_the_documents_group_never_sees_its_bet_nor_the_vocabulary_page(employee_app, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setenv("KB_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    at = employee_app([])
    salary = doc_of("salary.md")
    best_bets_store(get_settings()).add(new_bet(["salary"], "contains", "recommended by HR", salary), OPERATOR.who)
    at = search(set_threshold(at, 0.0), "what is the salary band")
    assert not at.exception
    assert pinned_cards(at) == [] and not any("B3 pays between" in h.value for h in at.html)
    with pytest.raises(ValueError):  # not in this person's navigation
        at.switch_page("views/vocabulary.py").run()

    hr = employee_app(["hr"])
    hr = search(set_threshold(hr, 0.0), "what is the salary band")
    [card] = pinned_cards(hr)
    assert "recommended by HR" in card and "B3 pays between" in card


def test_a_pinned_card_escapes_the_label_and_the_text():
    from app.services.results import Pinned
    from app.ui.components.pinned import pinned_html
    from ingest.types import Chunk

    chunk = Chunk("c1", "d1", "<script>alert(1)</script> leave", "T", "", None, 5, {"source": "/kb/a.md"})
    page = pinned_html(Pinned("bb-1", "<b>HR</b>", "contains", chunk), "leave")
    assert "<script>" not in page and "&lt;b&gt;HR&lt;/b&gt;" in page and "<mark>leave</mark>" in page
