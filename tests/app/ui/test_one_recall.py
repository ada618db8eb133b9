"""The Search page recalls once per question: the recall preview it shows while the reranker works is the recall
stage's output, and the reranker ranks those same candidates (no second embedding, no second recall)."""

from __future__ import annotations

import uuid

from bs4 import BeautifulSoup

from retrieval.embedder import Embedder


def test_an_uncached_search_embeds_its_question_once(app_test, monkeypatch):
    asked: list[str] = []
    embed = Embedder.embed_queries

    def counting(self, texts):  # the real embedding, counted
        asked.extend(texts)
        return embed(self, texts)

    monkeypatch.setattr(Embedder, "embed_queries", counting)
    at = app_test()
    question = f"how do I reset my VPN token {uuid.uuid4().hex[:8]}"  # never asked before: not in any cache
    at.text_input(key="kb_query").input(question)
    next(b for b in at.button if b.label == "Search").click()
    at = at.run()
    assert not at.exception
    cards = [h for h in at.html if 'class="kb-card"' in h.value]
    assert cards and all(BeautifulSoup(h.value, "html.parser").select_one(".kb-score").text != "—" for h in cards)
    assert sum(question in text for text in asked) == 1
