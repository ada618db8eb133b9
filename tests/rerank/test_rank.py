from __future__ import annotations

import pytest

from ingest.types import Chunk
from rerank.errors import RerankerParameterError
from rerank.rank import rerank, select
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


def _hits(n: int, doc=lambda i: "d") -> list[Hit]:
    return [Hit(chunk=Chunk(chunk_id=f"c{i}", doc_id=doc(i), text=f"text {i}", title="t", section="", page=None,
                            n_tokens=10, meta={"position": i}), retrieval_score=1.0 / (i + 1), leg="dense")
            for i in range(n)]


def _scored(hits, scores):
    """`hits` scored with `scores` (in hit order), sorted best first as the reranker returns them."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [Scored(index=i, text=hits[i].chunk.text, raw_score=scores[i], score=scores[i], band=band_of(scores[i]),
                   rank=r, hit=hits[i]) for r, i in enumerate(order, start=1)]


def test_select_threshold_and_top_n():
    hits = _hits(5, doc=str)
    scored = _scored(hits, [0.2, 0.9, 0.0, 0.7, 0.5])
    chosen = select(hits, scored, top_n=5, threshold=0.5)
    assert [s.score for s in chosen.shown] == [0.9, 0.7, 0.5] and [s.rank for s in chosen.shown] == [1, 2, 3]
    assert [s.score for s in chosen.hidden] == [0.2, 0.0]
    assert [s.score for s in select(hits, scored, 5, 0.0).shown] == [0.9, 0.7, 0.5, 0.2, 0.0]  # 0.0 is a value
    cut = select(hits, scored, top_n=2, threshold=0.0)
    assert [s.score for s in cut.shown] == [0.9, 0.7] and [s.score for s in cut.more] == [0.5, 0.2, 0.0]


def test_select_caps_per_document_merges_neighbours_and_fills_with_unscored():
    hits = _hits(6, doc=lambda i: "a" if i < 4 else "b")
    scored = _scored(hits[:4], [0.9, 0.8, 0.1, 0.7])  # a budget reranked the first four
    capped = select(hits, scored, top_n=10, threshold=0.5, max_per_doc=2)
    assert [s.hit.chunk.chunk_id for s in capped.shown] == ["c0", "c1", "c4", "c5"]  # c3 capped; c4, c5 unscored
    assert [s.score for s in capped.shown[2:]] == [None, None]
    merged = select(hits, scored, top_n=10, threshold=0.5, merge=True)
    first = merged.shown[0]
    assert first.hit.chunk.meta["merged"] == ["c0", "c1"] and first.hit.chunk.text == "text 0\ntext 1"
    recall_only = select(hits, None, top_n=3, threshold=0.99)  # no reranker: recall order, nothing hidden
    assert [s.hit.chunk.chunk_id for s in recall_only.shown] == ["c0", "c1", "c2"] and not recall_only.hidden


@pytest.mark.parametrize("kwargs, parameter", [({"threshold": 1.5}, "threshold"), ({"threshold": -0.1}, "threshold"),
                                               ({"top_n": 0}, "top_n"), ({"top_n": 2.5}, "top_n")])
def test_select_validates(kwargs, parameter):
    hits = _hits(1)
    with pytest.raises(RerankerParameterError, match=parameter):
        select(hits, _scored(hits, [0.5]), **{"top_n": 5, "threshold": 0.5, **kwargs})
