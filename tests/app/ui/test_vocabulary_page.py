"""The app's metadata filters (sidebar multiselects from the values present) and the Vocabulary page: an admin
saves synonyms and a user dictionary, bad lines are listed with their numbers, the audit log records it, and
the next search says what it also searched; the words live in the shared database."""

from __future__ import annotations

import json

import pytest

from app.services.control import control_store
from app.services.vocabulary import VocabularyStore
from tests.app.ui.helpers import cards, search, set_threshold
from tests.conftest import index_docs

DOCS = {
    "leave.md": "---\ndepartment: hr\n---\n# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
    "sick.md": "---\ndepartment: hr\n---\n# Sick leave\n\nSick leave needs a doctor's note after three days.\n",
    "vpn.md": "---\ndepartment: it\n---\n# VPN token\n\nTo reset a forgotten VPN token, open the self-service "
              "portal. Leave the old token with the IT desk.\n",
    "audit.txt": "Audit leave records are kept for five years.",
}


def _index(tmp_path, embedder):
    return index_docs(tmp_path, embedder, DOCS)


def files(at) -> set[str]:
    """The documents the result cards come from (by the file name in each card's source line)."""
    return {name for c in cards(at) for name in (*DOCS, "leave.md") if name in c.select_one(".kb-source").text}


def test_sidebar_filters_offer_the_values_present_and_restrict_results(app_test, tmp_path, embedder, monkeypatch):
    monkeypatch.setenv("KB_RECALL_MODE", "lexical")
    at = set_threshold(app_test(index=_index(tmp_path, embedder), reranker="none"), 0.0)
    assert at.multiselect(key="kb_filter_department").options == ["hr", "it"]
    assert at.multiselect(key="kb_filter_format").options == ["md", "txt"]
    at = search(at, "leave")
    assert {"leave.md", "sick.md", "vpn.md"} <= files(at)
    at.multiselect(key="kb_filter_department").set_value(["hr"]).run()
    assert not at.exception
    assert files(at) == {"leave.md", "sick.md"}
    assert any("Only documents with department hr" in c.value for c in at.caption)
    at.multiselect(key="kb_filter_department").set_value(["it"]).run()
    at.multiselect(key="kb_filter_format").set_value(["txt"]).run()
    assert cards(at) == [] and any("no document you may read matches" in w.value for w in at.warning)


@pytest.mark.slow
def test_vocabulary_page_saves_reports_and_applies(app_test, kb, tmp_path, monkeypatch):
    monkeypatch.setenv("KB_SYNONYMS", str(tmp_path / "synonyms.txt"))
    monkeypatch.setenv("KB_USER_DICT", str(tmp_path / "userdict.txt"))
    monkeypatch.setenv("KB_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    at = app_test()
    at.switch_page("views/vocabulary.py").run()
    assert not at.exception
    synonyms = at.text_area[0]  # then the user dictionary, then the best bets' phrases
    synonyms.input("holiday, annual leave\nlonely\n")
    next(b for b in at.button if b.label == "Save").click()  # the first form: synonyms
    at.run()
    assert not at.exception
    stored = VocabularyStore(control_store(f"sqlite:///{tmp_path / 'kb.db'}"))
    assert stored.text("synonyms") == ("holiday, annual leave\nlonely\n", 1)
    assert not (tmp_path / "synonyms.txt").exists()  # the database, not a file
    assert any("1 synonym sets" in s.value for s in at.success)
    assert any("synonyms:2" in w.value and "one term" in w.value for w in at.warning)
    entry = json.loads((tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert entry["action"] == "edit synonyms" and entry["skipped"] == 1 and entry["version"] == 1

    at.text_area[1].input("飞书审批\n")
    [b for b in at.button if b.label == "Save"][1].click()
    at.run()
    assert stored.text("user_dict") == ("飞书审批\n", 1)
    at.text_input(key="kb_voc_try").input("飞书审批 holiday").run()
    assert any("`飞书审批`" in m.value for m in at.markdown)
    assert any("Also searched:** annual leave" in m.value for m in at.markdown)

    at.switch_page("views/search.py").run()
    at = search(set_threshold(at, 0.0), "holiday")
    assert any(c.value.startswith("Also searched: annual leave") for c in at.caption)
    assert "leave.md" in files(at)
