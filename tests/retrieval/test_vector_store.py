"""The `VectorStore` backend (FAISS; a corpus in Milvus is tested in test_shared_corpus.py) against exact numpy ground
truth: exact indexes are exact,
approximate ones are measured, upsert/delete keep whole documents straight, and filters never leak."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.types import Chunk
from retrieval.stores.faiss import FaissStore


class Backend:
    """Makes empty stores: `exact` (flat) or approximate (HNSW)."""

    name = "faiss"

    def new(self, dim: int, ann: bool = False):
        return FaissStore(dim, ann_threshold=100 if ann else 50_000)

    def reopen(self, store, folder):
        """The store a process gets when it loads the version saved in `folder`."""
        return FaissStore.load(folder)


@pytest.fixture
def backend() -> Backend:
    return Backend()


def unit(rng, n, d):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def chunks_for(n, groups_of=lambda i: []):
    return [Chunk(chunk_id=f"c{i}", doc_id=f"d{i // 10}", text=f"t{i}", meta={"acl": groups_of(i)}) for i in range(n)]


def exact_top(vectors, queries, k):
    sims = queries @ vectors.T
    return [list(np.argsort(-row)[:k]) for row in sims]


def test_exact_search_is_exact(backend):
    rng = np.random.default_rng(0)
    vecs, queries = unit(rng, 2000, 32), unit(rng, 20, 32)
    store = backend.new(32)
    store.upsert(chunks_for(2000), vecs)
    got = store.search(queries, 10)
    for q, truth, row in zip(queries, exact_top(vecs, queries, 10), got):
        assert [cid for cid, _ in row] == [f"c{i}" for i in truth]
        assert [s for _, s in row] == pytest.approx([float(vecs[i] @ q) for i in truth], abs=1e-5)  # cosine
    assert store.kind in ("flat", "milvus-flat")


@pytest.mark.slow
def test_ann_recall_against_exact_search(backend):
    rng = np.random.default_rng(1)
    vecs, queries = unit(rng, 5000, 48), unit(rng, 50, 48)
    store = backend.new(48, ann=True)
    store.upsert(chunks_for(5000), vecs)
    assert store.kind in ("hnsw", "milvus-hnsw")
    got = store.search(queries, 10)
    truth = exact_top(vecs, queries, 10)
    recall = np.mean([len({f"c{i}" for i in t} & {c for c, _ in g}) / 10 for t, g in zip(truth, got)])
    assert recall >= 0.95, recall


def test_upsert_replaces_and_delete_removes_whole_documents(backend):
    rng = np.random.default_rng(2)
    store = backend.new(16)
    store.upsert(chunks_for(30), unit(rng, 30, 16))
    newer = unit(rng, 1, 16)
    store.upsert([Chunk(chunk_id="c5", doc_id="d0", text="new", meta={"acl": []})], newer)
    assert store.count() == 30
    assert store.search(newer, 1)[0][0][0] == "c5"
    assert store.delete(["d1"]) == 10
    assert store.delete(["d1", "no-such-doc"]) == 0
    assert store.count() == 20
    assert not any(cid in {f"c{i}" for i in range(10, 20)} for cid, _ in store.search(unit(rng, 1, 16), 30)[0])
    assert store.search(unit(rng, 2, 16), 0) == [[], []]


def test_document_ids_with_quotes_and_backslashes(backend):
    """Milvus filters are expressions: ids are quoted, never pasted in raw."""
    rng = np.random.default_rng(5)
    odd = ['C:\\kb\\"quoted".md', "it's.md", "plain.md"]
    chunks = [Chunk(chunk_id=f"{d}#{i}", doc_id=d, text="t", meta={"acl": ['g"1']}) for d in odd for i in range(2)]
    store = backend.new(8)
    store.upsert(chunks, unit(rng, 6, 8))
    assert store.delete(odd[:2]) == 4
    assert {c for c, _ in store.search(unit(rng, 1, 8), 10, groups=['g"1'])[0]} == {"plain.md#0", "plain.md#1"}


@pytest.mark.slow
@pytest.mark.parametrize("ann", [False, True], ids=["exact", "ann"])
def test_group_filter_never_leaks(backend, ann):
    rng = np.random.default_rng(3)
    groups = lambda i: ["hr"] if i % 3 == 0 else (["it"] if i % 3 == 1 else [])  # noqa: E731
    chunks, vecs = chunks_for(3000, groups), unit(rng, 3000, 24)
    store = backend.new(24, ann=ann)
    store.upsert(chunks, vecs)
    acl = {c.chunk_id: c.meta["acl"] for c in chunks}
    for row in store.search(unit(rng, 30, 24), 50, groups=["it"]):
        assert len(row) == 50
        assert all(acl[cid] in ([], ["it"]) for cid, _ in row)
    assert store.search(unit(rng, 1, 24), 5, groups=[])[0]  # public chunks only
    assert all(acl[c] == [] for c, _ in store.search(unit(rng, 1, 24), 50, groups=[])[0])
    seen = {c for row in store.search(unit(rng, 30, 24), 50) for c, _ in row}
    assert {tuple(acl[c]) for c in seen} == {("hr",), ("it",), ()}  # groups=None: no restriction


@pytest.mark.slow
@pytest.mark.parametrize("ann", [False, True], ids=["exact", "ann"])
def test_filter_is_applied_inside_the_search_not_after_top_k(backend, ann):
    """The only chunks a caller may see are the ones least like the query: filtering the global top k afterwards
    would return nothing; filtering inside the search returns exactly them."""
    rng = np.random.default_rng(6)
    vecs, q = unit(rng, 2000, 16), unit(rng, 1, 16)
    farthest = set(np.argsort(vecs @ q[0])[:5].tolist())
    chunks = chunks_for(2000, lambda i: ["legal"] if i in farthest else ["staff"])
    store = backend.new(16, ann=ann)
    store.upsert(chunks, vecs)
    got = store.search(q, 5, groups=["legal"])[0]
    assert {c for c, _ in got} == {f"c{i}" for i in farthest}
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    assert store.search(q, 5, groups=["nobody"]) == [[]]


@pytest.mark.slow
@pytest.mark.parametrize("ann", [False, True], ids=["exact", "ann"])
def test_document_filter_fills_k_with_matching_chunks(backend, ann):
    """A metadata filter (a set of allowed documents) is applied inside the search like the groups: the documents
    it allows are the ones least like the query, and still fill K, in score order, together with the groups."""
    rng = np.random.default_rng(8)
    vecs, q = unit(rng, 3000, 16), unit(rng, 1, 16)
    chunks = chunks_for(3000, lambda i: ["hr"] if i % 2 else [])  # d0..d299, ten chunks each
    order = np.argsort(vecs @ q[0])  # least similar first
    far_docs = list(dict.fromkeys(chunks[i].doc_id for i in order))[:6]
    store = backend.new(16, ann=ann)
    store.upsert(chunks, vecs)
    got = store.search(q, 40, docs=set(far_docs))[0]
    assert len(got) == 40 and {f"d{int(c[1:]) // 10}" for c, _ in got} <= set(far_docs)
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    public = store.search(q, 40, groups=[], docs=set(far_docs))[0]
    assert len(public) == 30 and all(int(c[1:]) % 2 == 0 for c, _ in public)  # only their public chunks
    assert store.search(q, 5, docs=set()) == [[]]


def test_chunk_in_several_groups_is_seen_by_each(backend):
    rng = np.random.default_rng(7)
    chunks = [Chunk(chunk_id="both", doc_id="d", text="t", meta={"acl": ["hr", "it"]}),
              Chunk(chunk_id="hr-only", doc_id="d", text="t", meta={"acl": ["hr"]})]
    store = backend.new(8)
    store.upsert(chunks, unit(rng, 2, 8))
    q = unit(rng, 1, 8)
    assert {c for c, _ in store.search(q, 5, groups=["it"])[0]} == {"both"}
    assert {c for c, _ in store.search(q, 5, groups=["hr"])[0]} == {"both", "hr-only"}
    assert {c for c, _ in store.search(q, 5, groups=["sales", "it"])[0]} == {"both"}


def test_save_and_load_round_trip(backend, tmp_path):
    rng = np.random.default_rng(4)
    store = backend.new(16)
    store.upsert(chunks_for(100, lambda i: ["hr"] if i < 5 else []), unit(rng, 100, 16))
    store.save(tmp_path / "dense")
    again = backend.reopen(store, tmp_path / "dense")
    q = unit(rng, 3, 16)
    assert again.count() == store.count() == 100
    assert again.search(q, 7) == store.search(q, 7)
    assert again.search(q, 7, groups=["it"]) == store.search(q, 7, groups=["it"])
