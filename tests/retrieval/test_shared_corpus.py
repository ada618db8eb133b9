"""A corpus kept in Milvus and the shared database (`retrieval.shared`): readers keep their revision whole while a
writer works, a dead writer leaves nothing behind, one writer at a time through the database's lease, access is
checked inside the search and again against the catalog, BM25 in Milvus ranks as bm25s does, and a changed user
dictionary moves the alias to a new collection without re-embedding. Milvus Lite (a file: one process) stands in
for the server; tests/reliability runs the same over `milvus-lite server` with several processes."""

from __future__ import annotations

import itertools
import json
import logging
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ingest import chunk, discover, load
from ingest.types import Chunk, Document
from retrieval.analyzer import Analyzer, DictEntry
from retrieval.catalog import Catalog, LeaseLost, WriterBusy
from retrieval.filters import parse
from retrieval.index import IndexMismatch, IndexNotFound
from retrieval.lexical import LexicalIndex
from retrieval.shared import SharedOpener
from retrieval.stores.milvus import MilvusConfig, MilvusCorpus, MilvusStoreError
from retrieval.synonyms import parse_synonyms
from tests.databases import postgres_url

REPO = Path(__file__).resolve().parents[2]
EMB = {"name": "test-embedder", "dim": 8, "path": None}
_names = itertools.count()


@pytest.fixture(scope="module")
def lite(tmp_path_factory) -> str:
    """One Milvus Lite file for the module (one embedded server); each test its own corpus."""
    return str(tmp_path_factory.mktemp("milvus") / "corpus.db")


@pytest.fixture
def database(request, tmp_path) -> str:
    """The shared database: SQLite (one machine), or PostgreSQL when a test asks for it and KB_TEST_POSTGRES_URL
    names one (.ci/run starts one). Every corpus a test makes has a name of its own, so runs never meet."""
    return f"sqlite:///{tmp_path / 'kb.db'}" if getattr(request, "param", "sqlite") == "sqlite" else postgres_url()


@pytest.fixture
def opener(lite, tmp_path, database):
    def make(analyzer: Analyzer | None = None, name: str | None = None) -> SharedOpener:
        return SharedOpener(MilvusConfig(lite, name or make.name, "FLAT"), database, analyzer or Analyzer())

    make.name = f"kb{next(_names)}"
    return make


def unit(rng, n, d=8):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def doc(doc_id: str, text: str, acl=(), n: int = 1) -> tuple[Document, list[Chunk]]:
    d = Document(doc_id=doc_id, source=f"/kb/{doc_id}.md", title=doc_id, text=text,
                 meta={"content_hash": f"{doc_id}:{text}", "acl": list(acl), "format": "md"})
    return d, [Chunk(chunk_id=f"{doc_id}-{i}-{abs(hash(text)) % 10**6}", doc_id=doc_id, text=f"{text} {i}",
                     title=doc_id, meta={"acl": list(acl)}) for i in range(n)]


def write(opener: SharedOpener, root: Path, docs, rng, delete=(), publish: bool = True) -> None:
    with opener.writing(root):
        index = opener.open(root, EMB, {})
        if docs:
            index.replace_documents(docs, unit(rng, sum(len(c) for _, c in docs)))
        index.delete_documents(list(delete))
        if publish:
            index.save()


def seen(index, groups=None) -> set[str]:
    """Every chunk of the revision `groups` may read, by the dense leg."""
    return {c.chunk_id.split("-")[0] for c, _ in index.dense_hits(np.ones((1, 8), np.float32), 100, groups)}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_a_reader_keeps_its_revision_whole_and_a_dead_writer_leaves_nothing(opener, tmp_path):
    rng, root, op = np.random.default_rng(0), tmp_path / "index", opener()
    write(op, root, [doc("a", "annual leave"), doc("b", "vpn token"), doc("c", "expense claims")], rng)
    reader = op.open(root, EMB, {})
    assert reader.version == "r1" and seen(reader) == {"a", "b", "c"} and len(reader.chunks) == 3

    # a writer replaces a and deletes b, then dies before publishing: the reader sees revision 1 throughout
    with op.writing(root):
        writer = op.open(root, EMB, {})
        writer.replace_documents([doc("a", "annual leave, new rules", n=2)], unit(rng, 2))
        writer.delete_documents(["b"])
        assert seen(reader) == {"a", "b", "c"}
        assert [c.text for c, _ in reader.lexical_hits("annual leave", 5)] == ["annual leave 0"]
    assert op.published(root) == "r1"

    write(op, root, [doc("d", "parking permits")], rng)  # the next writer sweeps the dead one's rows and marks
    now = op.open(root, EMB, {})
    assert now.version == "r2" and seen(now) == {"a", "b", "c", "d"} and len(now.chunks) == 4
    assert [c.text for c, _ in now.lexical_hits("annual leave", 5)] == ["annual leave 0"]
    assert seen(reader) == {"a", "b", "c"}  # still on revision 1 until it opens revision 2

    write(op, root, [doc("a", "annual leave, new rules", n=2)], rng, delete=["b"])
    last = op.open(root, EMB, {})
    assert seen(last) == {"a", "c", "d"} and sorted(last.documents) == ["a", "c", "d"]
    assert sorted(c.text for c, _ in last.lexical_hits("annual leave rules", 5)) == \
        ["annual leave, new rules 0", "annual leave, new rules 1"]
    assert sorted(c.chunk_id.split("-")[0] for c in last.chunks.values()) == ["a", "a", "c", "d"]
    # one document's rows, of the revision each reader is on (a best bet's first passage)
    assert sorted(c.text for c in last.document_chunks("a")) == ["annual leave, new rules 0", "annual leave, new rules 1"]
    assert [c.text for c in reader.document_chunks("a")] == ["annual leave 0"] and last.document_chunks("b") == []


def test_each_caller_reads_only_its_groups_even_when_a_row_is_tampered_with(opener, tmp_path):
    """Anyone who reaches Milvus can rewrite a row's access fields: here the hr row is made public in the
    collection itself. The store then returns it to alice, and the shared index still refuses it, because the
    catalog's record of the published revision says the document is hr's."""
    rng, root, op = np.random.default_rng(1), tmp_path / "index", opener()
    write(op, root, [doc("vpn", "reset the vpn token"), doc("salary", "salary band pay", ["hr"]),
                     doc("both", "salary review board", ["hr", "finance"])], rng)
    index = op.open(root, EMB, {})
    assert seen(index, []) == {"vpn"} and seen(index, ["hr"]) == {"vpn", "salary", "both"}
    assert seen(index, ["finance"]) == {"vpn", "both"} and seen(index, None) == {"vpn", "salary", "both"}
    assert [c.doc_id for c, _ in index.lexical_hits("salary band", 10, ["finance"])] == ["both"]
    assert index.matching_documents(parse(["title=salary"]), ["hr"]) == {"salary"}
    assert index.matching_documents(parse(["title=salary"]), ["finance"]) == set()

    corpus = index.corpus
    rows = list(corpus._rows_of(["salary"], "gen >= 0"))
    corpus.insert([{**{k: v for k, v in r.items() if k != "sparse"}, "acl": [], "public": True} for r in rows])
    assert any(r.chunk.doc_id == "salary" for r in corpus.lexical(index.analyzer.analyze("salary band"), 10,
                                                                   index.revision, groups=[]))
    assert [c.doc_id for c, _ in index.lexical_hits("salary band", 10, groups=[])] == []
    assert "salary" not in seen(index, [])


def test_ids_and_groups_with_quotes_are_quoted_not_pasted(opener, tmp_path):
    rng, root, op = np.random.default_rng(2), tmp_path / "index", opener()
    odd = 'x" or doc_id != "'
    write(op, root, [doc(odd, "quoted id", ['g"1']), doc("plain", "plain text")], rng)
    index = op.open(root, EMB, {})
    assert seen(index, ['g"1']) == {odd, "plain"} and seen(index, ["g"]) == {"plain"}
    write(op, root, [], rng, delete=[odd])
    assert seen(op.open(root, EMB, {})) == {"plain"}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_one_writer_at_a_time_through_the_shared_database(opener, tmp_path):
    rng, root, op = np.random.default_rng(3), tmp_path / "index", opener()
    with op.writing(root):
        with pytest.raises(WriterBusy, match="being written by another process"):
            with op.writing(root):
                pass
    catalog = Catalog.at(op.database_url)
    key = op.key(root)
    assert catalog.acquire(key, "dead-writer", ttl=0.3)  # a writer that died holding the lease
    with pytest.raises(WriterBusy):
        write(op, root, [doc("a", "text")], rng)
    time.sleep(0.5)  # its lease ran out: the next writer takes it
    write(op, root, [doc("a", "text")], rng)
    assert op.published(root) == "r1"
    gone = subprocess.Popen(["true"])
    gone.wait()  # a writer of this machine killed while holding the lease: taken at once, not after LEASE_S
    assert catalog.acquire(key, f"{socket.gethostname()}:{gone.pid}:x", ttl=60)
    write(op, root, [doc("b", "text")], rng)
    assert op.published(root) == "r2"

    with op.writing(root):
        writer = op.open(root, EMB, {})
        writer.replace_documents([doc("c", "more")], unit(rng, 1))
        catalog.release(key, writer.holder)  # its lease was lost (expired and taken meanwhile)
        assert catalog.acquire(key, "another-writer")
        with pytest.raises(LeaseLost, match="nothing was published"):
            writer.save()
    assert op.published(root) == "r2"


def test_a_changed_user_dictionary_copies_the_rows_into_a_new_collection_and_moves_the_alias(opener, tmp_path):
    rng, root = np.random.default_rng(4), tmp_path / "index"
    plain, custom = opener(), opener(Analyzer([DictEntry("云桌面客户端")]))
    write(plain, root, [doc("a", "下载云桌面客户端的步骤"), doc("b", "云端 桌面 壁纸")], rng)
    before = plain.open(root, EMB, {})
    vectors_before = {r["chunk_id"]: r["vector"] for r in before.corpus._rows_of(["a", "b"], "gen >= 0")}

    write(custom, root, [], rng)  # a writer with the new dictionary: no file changed, the terms are made again
    after = plain.open(root, EMB, {})  # a reader whose own dictionary is still the old one
    assert after.corpus.collection != before.corpus.collection and after.analyzer.fingerprint == \
        custom.analyzer.fingerprint  # queries are analysed as the revision's terms were
    word = ["云桌面客户端"]  # one term with the new dictionary, only sub-words without it
    assert "云桌面客户端" in after.analyzer.analyze("下载云桌面客户端") and "云桌面客户端" not in \
        plain.analyzer.analyze("下载云桌面客户端")
    assert [r.chunk.doc_id for r in after.corpus.lexical(word, 5, after.revision)] == ["a"]  # the new terms
    assert before.corpus.lexical(word, 5, before.revision) == []  # the old collection has only sub-words
    assert [c.doc_id for c, _ in after.lexical_hits("云桌面客户端", 5)][0] == "a"
    assert {r["chunk_id"]: r["vector"] for r in after.corpus._rows_of(["a", "b"], "gen >= 0")} == vectors_before  # not re-embedded
    client = after.corpus  # the alias names the new collection; the old one stays for readers still on r1
    assert client._call("describe the alias", "describe_alias", plain.name)["collection_name"] == \
        after.corpus.collection
    assert before.corpus.exists() and seen(before) == {"a", "b"}
    write(custom, root, [doc("c", "新文档")], rng)
    assert not before.corpus.exists()  # dropped by the publish after


def test_another_embedder_or_nothing_published_is_refused_with_the_fix(opener, tmp_path):
    rng, root, op = np.random.default_rng(5), tmp_path / "index", opener()
    with pytest.raises(IndexNotFound, match="kb ingest"):
        op.open(root, EMB, {}, create=False)
    write(op, root, [doc("a", "text")], rng)
    with pytest.raises(IndexMismatch, match="--rebuild"):
        op.open(root, {**EMB, "name": "other", "dim": 16}, {})
    with pytest.raises(ValueError, match="KB_MILVUS_COLLECTION"):
        MilvusCorpus(op.milvus.uri, "kb-chunks", 8)


def test_an_unreachable_milvus_is_a_clear_error_not_a_traceback(tmp_path):
    corpus = MilvusCorpus("http://127.0.0.1:9", "kb", 8)  # nothing listens on port 9
    started = time.monotonic()
    with pytest.raises(MilvusStoreError, match="cannot be reached|did not answer"):
        corpus.exists()
    assert time.monotonic() - started < 30


def test_bm25_in_milvus_ranks_as_bm25s_on_the_sample_library(opener, tmp_path, count_tokens):
    """Same terms, same k1 and b: the Milvus leg's top 10 agrees with bm25s's on the sample questions."""
    rng, root, op = np.random.default_rng(6), tmp_path / "index", opener()
    docs = []
    for path in discover([REPO / "data" / "samples" / "docs"]).files:
        d = load(path)
        docs.append((d, chunk(d, count_tokens, 256)))
    write(op, root, docs, rng)
    index = op.open(root, EMB, {})
    bm25s = LexicalIndex.of([c for _, cs in docs for c in cs], Analyzer())
    queries = [json.loads(line)["text"] for line in (REPO / "data/samples/queries.jsonl").read_text().splitlines()]
    overlaps, firsts = [], []
    for q in queries:
        scored = bm25s.search(q, 10)
        want = [cid for cid, _ in scored]
        hits = index.lexical_hits(q, 10)
        got = [c.chunk_id for c, _ in hits]
        if scored:  # the same score, not only the same order (what a card or --json shows as retrieval_score)
            assert hits[0][1] == pytest.approx(scored[0][1], rel=1e-4)
        if want:
            overlaps.append(len(set(want) & set(got)) / len(want))
            firsts.append(want[0] == got[0])
    assert len(overlaps) >= 10
    assert np.mean(overlaps) >= 0.9 and np.mean(firsts) >= 0.9, (np.mean(overlaps), np.mean(firsts))


def test_a_collection_already_named_like_the_corpus_does_not_stop_a_publish(opener, tmp_path, caplog):
    """An older kb-search kept one collection named KB_MILVUS_COLLECTION; the corpus's alias cannot take that name,
    so the publish goes through (readers follow the catalog, not the alias) and the log says what to drop."""
    caplog.set_level(logging.WARNING, logger="retrieval.shared")  # whatever an earlier test set (the CLI quiets ours)
    rng, root, op = np.random.default_rng(7), tmp_path / "index", opener()
    MilvusCorpus(op.milvus.uri, op.name, 8, "FLAT").create()  # the old collection
    write(op, root, [doc("a", "annual leave")], rng)
    assert op.published(root) == "r1" and seen(op.open(root, EMB, {})) == {"a"}
    assert "must be dropped for the alias to work" in caplog.text


def test_synonyms_in_milvus_search_the_rule_in_place_of_what_the_query_said(opener, tmp_path):
    rng, root, op = np.random.default_rng(8), tmp_path / "index", opener()
    write(op, root, [doc("wfh", "WFH is allowed on Fridays"), doc("remote", "远程办公须经主管批准"),
                     doc("leave", "年休假天数根据累计工作时间确定"), doc("other", "报销发票须在月底前提交")], rng)
    index = op.open(root, EMB, {})

    def hits(rules: str, query: str) -> list[str]:
        expansions = parse_synonyms(rules)[0].expansions(query)
        return [c.doc_id for c, _ in index.lexical_hits(query, 10, synonyms=expansions)]

    assert hits("", "wfh") == ["wfh"]
    assert hits("wfh => 远程办公", "wfh") == ["remote"]  # what the query said is searched as the right side only
    assert sorted(hits("wfh => wfh, 远程办公", "wfh")) == ["remote", "wfh"]
    assert hits("年假, 年休假, annual leave", "annual leave") == ["leave"]
    assert hits("年假, 年休假, annual leave", "年休假") == ["leave"]  # the user's word, once


def test_a_collection_made_before_the_bigram_field_serves_words_and_the_next_writer_adds_bigrams(opener, tmp_path,
                                                                                                database):
    """An upgrade: a corpus whose collection has no bigram field (made by the previous kb-search) keeps serving by
    its words, and the next writer copies its rows into a collection that has one (vectors kept)."""
    from pymilvus import DataType, Function, FunctionType
    from sqlalchemy import create_engine, text

    from retrieval.shared import physical_name
    from retrieval.stores.milvus import _client

    rng, root, op = np.random.default_rng(9), tmp_path / "index", opener()
    write(op, root, [doc("shop", "乒乓球拍卖完了请下周再来"), doc("vpn", "Reset the VPN token")], rng)
    new = op.open(root, EMB, {})
    # the collection the previous version made: the same fields without `grams` / `sparse_grams`
    old = MilvusCorpus(new.corpus.uri, physical_name(op.name, 7), 8, "FLAT")
    client = _client(new.corpus.uri, None)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    for name, kind, extra in (("row_id", DataType.VARCHAR, {"is_primary": True, "max_length": 4200}),
                              ("chunk_id", DataType.VARCHAR, {"max_length": 4096}),
                              ("doc_id", DataType.VARCHAR, {"max_length": 4096}),
                              ("acl", DataType.ARRAY, {"element_type": DataType.VARCHAR, "max_capacity": 64,
                                                       "max_length": 256}),
                              ("public", DataType.BOOL, {}), ("gen", DataType.INT64, {}), ("died", DataType.INT64, {}),
                              ("chunk", DataType.VARCHAR, {"max_length": 65535}),
                              ("terms", DataType.VARCHAR, {"max_length": 65535, "enable_analyzer": True,
                                                           "analyzer_params": {"tokenizer": "standard"}}),
                              ("sparse", DataType.SPARSE_FLOAT_VECTOR, {}), ("vector", DataType.FLOAT_VECTOR, {"dim": 8})):
        schema.add_field(name, kind, **extra)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"],
                                 output_field_names=["sparse"]))
    params = client.prepare_index_params()
    params.add_index("vector", index_type="FLAT", metric_type="IP")
    params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(old.collection, schema=schema, index_params=params, consistency_level="Strong")
    rows = [{k: v for k, v in r.items() if k != "grams"} for r in new.corpus._rows_of(["shop", "vpn"], "gen >= 0")]
    old.insert(rows)
    old.flush()
    with create_engine(database).begin() as conn:  # the published revision names the old collection
        conn.execute(text("UPDATE kb_revisions SET manifest = replace(manifest, :a, :b)"),
                     {"a": f'"{new.corpus.collection}"', "b": f'"{old.collection}"'})

    reader = op.open(root, EMB, {})
    assert reader.corpus.collection == old.collection and not reader.corpus.has_grams()
    assert [c.doc_id for c, _ in reader.lexical_hits("乒乓球", 5)] == ["shop"]  # served by its words
    assert reader.lexical_hits("球拍", 5) == []  # jieba cut 乒乓球 / 拍卖: only bigrams find 球拍

    write(op, root, [], rng)  # a writer with nothing to change copies the rows into a collection with bigrams
    after = op.open(root, EMB, {})
    assert after.corpus.collection not in (old.collection, new.corpus.collection) and after.corpus.has_grams()
    assert [c.doc_id for c, _ in after.lexical_hits("球拍", 5)] == ["shop"]
    assert {r["chunk_id"]: r["vector"] for r in after.corpus._rows_of(["shop", "vpn"], "gen >= 0")} == \
        {r["chunk_id"]: r["vector"] for r in rows}  # not re-embedded
