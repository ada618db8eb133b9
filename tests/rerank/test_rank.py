from __future__ import annotations

import pytest

from ingest.types import Chunk
from rerank.errors import RerankerParameterError
from rerank.rank import filter_scored, rerank
from rerank.types import Scored, band_of
from retrieval.types import Hit

QUERY = "How many days of annual leave do employees get?"
TEXTS = ["Employees are entitled to 20 days of paid annual leave.", "The VPN must be used remotely.",
         "员工每年享有十五天带薪年假。", "Meal allowances are paid monthly.", "<b>Annual</b> leave via the HR portal."]


def test_rerank_sorts_by_score_with_ranks(bert_engine):
    scored = rerank(QUERY, TEXTS, bert_engine)
    raw = bert_engine.score(QUERY, TEXTS)
    assert [s.rank for s in scored] == list(range(1, len(TEXTS) + 1))
    assert [s.raw_score for s in scored] == sorted((r for r, _ in raw), reverse=True)
    for s in scored:
        assert s.raw_score == pytest.approx(raw[s.index][0]) and s.band == band_of(s.score) and s.hit is None
    html = next(s for s in scored if s.index == 4)
    assert "<b>" not in html.text and html.text.replace("\n", " ") == "Annual leave via the HR portal."


def test_rerank_hits_keeps_hits(bert_engine):
    hits = [Hit(chunk=Chunk(chunk_id=f"c{i}", doc_id="d", text=t, title="t", section="", page=None, n_tokens=10,
                            meta={}), retrieval_score=1.0 / (i + 1), leg="dense") for i, t in enumerate(TEXTS)]
    scored = rerank(QUERY, hits, bert_engine)
    assert {s.hit.chunk.chunk_id for s in scored} == {f"c{i}" for i in range(len(TEXTS))}
    assert all(s.hit is hits[s.index] for s in scored)
    assert rerank(QUERY, [], bert_engine) == []


def _scored(scores):
    return [Scored(index=i, text=str(i), raw_score=0.0, score=s, band=band_of(s), rank=i + 1)
            for i, s in enumerate(scores)]


def test_filter_threshold_and_top_n():
    items = _scored([0.9, 0.7, 0.5, 0.2, 0.0])
    assert [s.score for s in filter_scored(items, threshold=0.5)] == [0.9, 0.7, 0.5]
    assert [s.score for s in filter_scored(items, threshold=0.0)] == [0.9, 0.7, 0.5, 0.2, 0.0]  # 0.0 is a value
    assert [s.score for s in filter_scored(items, top_n=2)] == [0.9, 0.7]
    assert [s.score for s in filter_scored(items, threshold=0.6, top_n=5)] == [0.9, 0.7]
    assert filter_scored(items) == items


@pytest.mark.parametrize("kwargs, parameter", [({"threshold": 1.5}, "threshold"), ({"threshold": -0.1}, "threshold"),
                                               ({"top_n": 0}, "top_n"), ({"top_n": 2.5}, "top_n")])
def test_filter_validates(kwargs, parameter):
    with pytest.raises(RerankerParameterError, match=parameter):
        filter_scored(_scored([0.5]), **kwargs)
