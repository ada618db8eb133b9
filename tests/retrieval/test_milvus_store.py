"""What only the Milvus backend has to get right: one live collection shared by the index's versions (readers see
their published version, a dead writer's rows are swept), the index folder wiring, and clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ingest.types import Chunk, Document
from retrieval.index import IndexMismatch, KnowledgeIndex
from retrieval.stores.milvus import MilvusConfig, MilvusStore, MilvusStoreError, MilvusStoreFactory

REPO = Path(__file__).resolve().parents[2]
EMB = {"name": "test-embedder", "dim": 8, "path": None}


def unit(rng, n, d=8):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def chunks(prefix, n, doc="d"):
    return [Chunk(chunk_id=f"{prefix}{i}", doc_id=f"{doc}{i % 4}", text="t", meta={"acl": []}) for i in range(n)]


def ids(store, k=100):
    return {c for c, _ in store.search(np.ones((1, 8), dtype=np.float32), k)[0]}


def test_a_reader_sees_its_published_version_and_a_dead_writers_rows_are_swept(tmp_path):
    uri, rng = str(tmp_path / "m.db"), np.random.default_rng(0)
    first = MilvusStore(8, uri, "kb", "FLAT")
    first.upsert(chunks("a", 20), unit(rng, 20))
    first.save(tmp_path / "v1")

    reader = MilvusStore.load(tmp_path / "v1", uri)  # e.g. `kb serve` on version 1
    writer = MilvusStore.load(tmp_path / "v1", uri)  # an ingest, not yet published
    writer.upsert(chunks("new", 6, doc="n"), unit(rng, 6))
    assert ids(writer) == {f"a{i}" for i in range(20)} | {f"new{i}" for i in range(6)}  # a writer sees its rows
    assert ids(reader) == {f"a{i}" for i in range(20)} and reader.count() == 20  # unpublished rows take no slot
    del writer  # the ingest dies before publishing: its rows stay in Milvus for now

    retry = MilvusStore.load(tmp_path / "v1", uri)
    retry.upsert(chunks("b", 2, doc="b"), unit(rng, 2))  # its first write sweeps the dead writer's rows
    assert retry.count() == 22
    retry.save(tmp_path / "v2")
    after = MilvusStore.load(tmp_path / "v2", uri)
    assert ids(after) == {f"a{i}" for i in range(20)} | {"b0", "b1"}
    assert reader.count() == 20  # still on version 1 until it loads version 2


def test_a_rebuild_into_the_same_collection_starts_it_over(tmp_path):
    uri, rng = str(tmp_path / "m.db"), np.random.default_rng(1)
    old = MilvusStore(8, uri, "kb", "FLAT")
    old.upsert(chunks("old", 10), unit(rng, 10))
    old.save(tmp_path / "v1")
    fresh = MilvusStore(8, uri, "kb", "FLAT")  # what KnowledgeIndex(...) makes for `kb ingest --rebuild`
    fresh.upsert(chunks("new", 3), unit(rng, 3))
    assert ids(fresh) == {"new0", "new1", "new2"} and fresh.count() == 3


def add_docs(index, n_docs, rng, acl_of=lambda d: []):
    for d in range(n_docs):
        doc = Document(doc_id=f"doc{d}", source=f"/kb/{d}.md", title=f"Doc {d}", text=f"text {d}",
                       meta={"content_hash": f"h{d}", "format": "md", "acl": acl_of(d)})
        cs = [Chunk(chunk_id=f"doc{d}-{i}", doc_id=doc.doc_id, text=f"chunk {d} {i}",
                    meta={"acl": acl_of(d), "position": i}) for i in range(3)]
        index.replace_document(doc, cs, unit(rng, 3))


def test_knowledge_index_on_milvus_matches_faiss_and_refuses_the_other_store(tmp_path):
    acl_of = lambda d: ["hr"] if d % 2 else []  # noqa: E731
    exact = MilvusConfig(index_type="FLAT")
    on_milvus = KnowledgeIndex(tmp_path / "m", EMB, {}, MilvusStoreFactory(exact))
    on_faiss = KnowledgeIndex(tmp_path / "f", EMB, {})
    for index in (on_milvus, on_faiss):
        add_docs(index, 12, np.random.default_rng(2), acl_of)
        index.delete_documents(["doc3"])
        index.save()
    assert (tmp_path / "m" / "milvus.db").exists()  # the default: a Milvus Lite file inside the index folder
    manifest = KnowledgeIndex.read_manifest(tmp_path / "m")
    assert manifest["vector_store"] == "milvus" and manifest["dense_index"] == "milvus-flat"

    again = KnowledgeIndex.open(tmp_path / "m", EMB, {}, MilvusStoreFactory(exact))
    faiss_again = KnowledgeIndex.open(tmp_path / "f", EMB, {})
    assert again.dense.count() == len(again.chunks) == 33
    q = unit(np.random.default_rng(3), 4)
    for groups in (None, [], ["hr"]):
        got, want = again.dense.search(q, 10, groups), faiss_again.dense.search(q, 10, groups)
        assert [[c for c, _ in row] for row in got] == [[c for c, _ in row] for row in want]
        assert [s for row in got for _, s in row] == pytest.approx([s for row in want for _, s in row], abs=1e-5)

    with pytest.raises(IndexMismatch, match="KB_VECTOR_STORE=milvus"):
        KnowledgeIndex.open(tmp_path / "m", EMB, {})
    with pytest.raises(IndexMismatch, match="KB_VECTOR_STORE=faiss"):
        KnowledgeIndex.open(tmp_path / "f", EMB, {}, MilvusStoreFactory(exact))
    with pytest.raises(IndexMismatch, match="KB_MILVUS_COLLECTION"):
        KnowledgeIndex.open(tmp_path / "m", EMB, {},
                            MilvusStoreFactory(MilvusConfig(collection="other", index_type="FLAT")))


def test_a_collection_of_another_dimension_is_refused_with_a_fix(tmp_path):
    uri = str(tmp_path / "m.db")
    MilvusStore(8, uri, "kb").count()  # creates an 8-d collection
    with pytest.raises(MilvusStoreError, match="holds 8-d vectors but the embedder gives 16-d.*KB_MILVUS_COLLECTION"):
        MilvusStore(16, uri, "kb").count()
    with pytest.raises(ValueError, match="KB_MILVUS_INDEX"):
        MilvusStore(8, uri, "kb", index_type="HNSW_TURBO")
    with pytest.raises(ValueError, match="KB_MILVUS_COLLECTION"):
        MilvusStore(8, uri, "kb-chunks")


@pytest.mark.slow
def test_milvus_lite_file_held_by_another_process_says_what_to_do(tmp_path):
    uri = str(tmp_path / "m.db")
    holder = textwrap.dedent(f"""
        from retrieval.stores.milvus import MilvusStore
        MilvusStore(8, {uri!r}).count()
        print("holding", flush=True)
        input()
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        with pytest.raises(MilvusStoreError, match="one process.*KB_MILVUS_URI=http"):
            MilvusStore(8, uri).count()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_recall_drops_a_chunk_the_store_should_have_filtered_out(tmp_path, embedder, mode):
    """Anyone who reaches Milvus can rewrite a row's access fields. Here the hr chunk's row is made public in the
    collection itself: the store then answers alice with it, and recall still refuses it, because the published
    version's chunk table says it is hr's."""
    from ingest import chunk
    from retrieval.recall import recall

    index = KnowledgeIndex(tmp_path / "idx", embedder.info(), {}, MilvusStoreFactory(MilvusConfig(index_type="FLAT")))
    texts = {"vpn": ("To reset a forgotten VPN token, open the self-service portal.", []),
             "salary": ("Salary band B3 pays between 60k and 80k a year.", ["hr"])}
    for key, (text, acl) in texts.items():
        doc = Document(doc_id=key, source=f"/kb/{key}.md", title=key, text=text,
                       meta={"acl": acl, "content_hash": key, "format": "md"})
        cs = chunk(doc, embedder.count_tokens, max_tokens=128)
        index.replace_document(doc, cs, embedder.embed_passages([c.context_text() for c in cs]))
    index.save()
    store = index.dense
    client = store._conn()  # the collection as anyone on port 19530 sees it without authentication
    rows = client.query(store.collection, filter='doc_id == "salary"', output_fields=["*"])
    client.upsert(store.collection, [{**r, "acl": [], "public": True} for r in rows])
    leaked = store.search(embedder.embed_queries(["salary band pay"]), 10, groups=[])[0]
    assert any(cid.startswith("salary") for cid, _ in leaked)  # the store's own filter no longer holds

    res = recall(index, embedder, "salary band pay", 10, mode, groups=[])
    assert res.hits and all(h.chunk.doc_id == "vpn" for h in res.hits)
    assert [h.chunk.doc_id for h in recall(index, embedder, "salary band pay", 10, mode, groups=["hr"]).hits][0] \
        == "salary"
