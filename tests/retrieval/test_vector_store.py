"""The FAISS store against exact numpy ground truth: flat is exact, HNSW recall is measured, filters never leak."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.types import Chunk
from retrieval.vector_store import FaissStore


def unit(rng, n, d):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def chunks_for(n, groups_of=lambda i: []):
    return [Chunk(chunk_id=f"c{i}", doc_id=f"d{i // 10}", text=f"t{i}", meta={"acl": groups_of(i)}) for i in range(n)]


def exact_top(vectors, queries, k):
    sims = queries @ vectors.T
    return [list(np.argsort(-row)[:k]) for row in sims]


def test_flat_search_is_exact():
    rng = np.random.default_rng(0)
    vecs, queries = unit(rng, 2000, 32), unit(rng, 20, 32)
    store = FaissStore(32)
    store.upsert(chunks_for(2000), vecs)
    got = store.search(queries, 10)
    for truth, row in zip(exact_top(vecs, queries, 10), got):
        assert [cid for cid, _ in row] == [f"c{i}" for i in truth]
    assert store.kind == "flat"


def test_hnsw_recall_against_exact_search():
    rng = np.random.default_rng(1)
    vecs, queries = unit(rng, 5000, 48), unit(rng, 50, 48)
    store = FaissStore(48, ann_threshold=1000)
    store.upsert(chunks_for(5000), vecs)
    assert store.kind == "hnsw"
    got = store.search(queries, 10)
    truth = exact_top(vecs, queries, 10)
    recall = np.mean([len({f"c{i}" for i in t} & {c for c, _ in g}) / 10 for t, g in zip(truth, got)])
    assert recall >= 0.95, recall


def test_upsert_replaces_and_delete_removes_whole_documents():
    rng = np.random.default_rng(2)
    store = FaissStore(16)
    store.upsert(chunks_for(30), unit(rng, 30, 16))
    newer = unit(rng, 1, 16)
    store.upsert([Chunk(chunk_id="c5", doc_id="d0", text="new", meta={"acl": []})], newer)
    assert store.count() == 30
    assert store.search(newer, 1)[0][0][0] == "c5"
    assert store.delete(["d1"]) == 10
    assert store.count() == 20
    assert not any(cid in {f"c{i}" for i in range(10, 20)} for cid, _ in store.search(unit(rng, 1, 16), 30)[0])


@pytest.mark.parametrize("ann_threshold", [50_000, 100])
def test_group_filter_never_leaks(ann_threshold):
    rng = np.random.default_rng(3)
    groups = lambda i: ["hr"] if i % 3 == 0 else (["it"] if i % 3 == 1 else [])  # noqa: E731
    chunks, vecs = chunks_for(3000, groups), unit(rng, 3000, 24)
    store = FaissStore(24, ann_threshold=ann_threshold)
    store.upsert(chunks, vecs)
    acl = {c.chunk_id: c.meta["acl"] for c in chunks}
    for row in store.search(unit(rng, 30, 24), 50, groups=["it"]):
        assert len(row) == 50
        assert all(acl[cid] in ([], ["it"]) for cid, _ in row)
    assert store.search(unit(rng, 1, 24), 5, groups=[])[0]  # public chunks only
    assert all(acl[c] == [] for c, _ in store.search(unit(rng, 1, 24), 50, groups=[])[0])


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    store = FaissStore(16)
    store.upsert(chunks_for(100, lambda i: ["hr"] if i < 5 else []), unit(rng, 100, 16))
    store.save(tmp_path / "dense")
    again = FaissStore.load(tmp_path / "dense")
    q = unit(rng, 3, 16)
    assert again.search(q, 7) == store.search(q, 7)
    assert again.search(q, 7, groups=["it"]) == store.search(q, 7, groups=["it"])
