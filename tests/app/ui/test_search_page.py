"""The Search page under AppTest, on a real index with a real (tiny) reranker: the cards carry exactly the
scores the search service gives, in its order, with hidden results behind an expander that counts them."""

from __future__ import annotations

import pytest

from app.identity import OPERATOR
from app.services.request import PRESETS, SearchRequest
from tests.app.ui.helpers import QUERY, cards, search, set_threshold


def test_cards_match_the_search_service(app_test, service):
    at = set_threshold(app_test(), 0.0)
    at.slider(key="kb_top_n").set_value(3)
    at = search(at.run(), QUERY)
    assert not at.exception
    expected = service.search(SearchRequest.of(QUERY, top_k=50, top_n=3, threshold=0.0), OPERATOR)
    shown = cards(at)
    assert len(shown) == len(expected.results) == 3
    for card, res in zip(shown, expected.results):
        assert card.select_one(".kb-score").text == f"{res.score:.4f}"
        assert card.select_one(".kb-raw").text == f"raw {res.raw_score:.4f}"
        assert card.select_one(".kb-band").text == res.band
        assert ("kb-pass" if res.score > 0.5 else "kb-fail") in card.select_one(".kb-score")["class"]
        assert res.hit.chunk.text.split()[0] in card.select_one(".kb-text").text
    assert [c.select_one(".kb-rank").text for c in shown] == ["1st", "2nd", "3rd"]
    assert any("rerank" in c.value and "total" in c.value for c in at.caption)  # per-stage timings


def test_results_under_the_threshold_are_counted_behind_an_expander(app_test, service):
    everything = service.search(SearchRequest.of(QUERY, top_k=50, top_n=50, threshold=0.0), OPERATOR)
    scores = sorted(r.score for r in everything.results)
    cut = round((scores[len(scores) // 2] + scores[len(scores) // 2 - 1]) / 2, 2)
    expected = service.search(SearchRequest.of(QUERY, top_k=50, top_n=5, threshold=cut), OPERATOR)
    assert expected.below_threshold, "the cut must hide something for this test to mean anything"
    at = search(set_threshold(app_test(), cut), QUERY)
    [exp] = [e for e in at.expander if "below the threshold" in e.label]
    assert exp.label.startswith(f"{len(expected.below_threshold)} result")
    assert len(cards(at)) == len(expected.results) + len(expected.below_threshold)
    assert all(float(c.select_one(".kb-score").text) < cut for c in cards(at)[len(expected.results):])


def test_presets_set_the_threshold_and_a_moved_slider_reads_custom(app_test):
    at = app_test()
    for name, value in PRESETS.items():
        at.radio(key="kb_preset").set_value(name)
        at.run()
        assert at.slider(key="kb_threshold").value == pytest.approx(value)
    at = set_threshold(at, 0.33)
    assert at.radio(key="kb_preset").value == "custom"


def test_a_chunk_with_markup_shows_it_as_text(app_test):
    at = search(set_threshold(app_test(), 0.0), "paste script tags into the wiki")
    texts = [c.select_one(".kb-text") for c in cards(at)]
    hit = [t for t in texts if "alert" in t.text]
    assert hit, "the document with <script> should be recalled"
    assert hit[0].find("script") is None and "<script>alert('x')</script>" in hit[0].text


def test_chinese_query_highlights_jieba_words(app_test):
    at = search(set_threshold(app_test(), 0.0), "试用期员工离职要办理什么手续")
    zh = [c for c in cards(at) if "试用期" in c.select_one(".kb-text").text]
    assert zh, "the Chinese document should be recalled (BM25 with jieba)"
    marks = {m.text for m in zh[0].select(".kb-text mark")}
    assert {"试用期", "员工", "手续"} <= marks or "试用期员工" in marks


def test_access_groups_restrict_what_is_found(app_test):
    at = set_threshold(app_test(), 0.0)
    at.toggle(key="kb_restrict").set_value(True)
    at = at.run()
    assert "hr" in at.multiselect(key="kb_groups").options
    at = search(at, "salary band B3 pay")
    assert not any("Band B3" in c.text for c in cards(at))
    at.multiselect(key="kb_groups").set_value(["hr"])
    at = at.run()
    assert any("Band B3" in c.text for c in cards(at))


def test_without_a_reranker_the_app_says_so_and_shows_recall_order(app_test):
    at = search(app_test(reranker="models/does-not-exist"), QUERY)
    assert "recall-only: reranker not loaded" in at.main.expander[0].label
    assert any("no reranker: no relevance scores" in m.value for m in at.markdown)  # the line above the cards
    shown = cards(at)
    assert shown and all(c.select_one(".kb-fill") is None for c in shown)
    assert all("no reranker score" in c.text for c in shown)


def test_a_fresh_recall_only_open_mode_start_is_one_status_line(app_test):
    """Issue 29: one compact line (mode, models, what is missing) instead of three boxes above the search box; the
    details and the fix behind it, each said once."""
    at = app_test(reranker="models/does-not-exist")
    assert not at.exception and not at.error and not at.warning
    [line] = at.main.expander
    assert line.label == ("Open mode: everyone sees every document · recall-only: reranker not loaded · "
                          "embedder all-MiniLM-L6-v2")
    details = " ".join(m.value for m in line.markdown)
    assert "everyone who can open this page sees every document" in details and "KB_AUTH_PROVIDER_URL" in details
    assert details.count("could not be loaded") == 1 and "cannot be loaded" not in details
    assert details.count("reranker 'models/does-not-exist'") == 1 and "kb ui --reranker models/<name>" in details
    assert at.text_input(key="kb_query")  # the search box is right under it


def test_all_well_is_a_quiet_line():
    from app.identity import Caller
    from app.ui.components import banners

    class Svc:  # what `summary` reads of a service
        reranker = type("R", (), {"name": "models/tiny"})()
        reranker_error, reranker_name = None, "models/tiny"
        embedder = type("E", (), {"name": "BAAI/bge-m3", "warning": None, "requested": "BAAI/bge-m3"})()

    line, details = banners.summary(Svc(), Caller("ann", ("hr",), via="app"))
    assert (line, details) == ("Reranked by models/tiny · embedder BAAI/bge-m3", [])


def test_missing_index_is_explained(app_test, kb):
    at = app_test(index=kb.root / "no-index-here")
    assert not at.exception
    assert any("No index at" in i.value and "kb ingest" in i.value for i in at.info)
