"""Hybrid recall with the real MiniLM embedder: each leg does its job, legs are labelled, groups never leak."""

from __future__ import annotations

import pytest

from ingest import Document, chunk
from retrieval.embedder import Embedder
from retrieval.index import KnowledgeIndex
from retrieval.recall import recall

DOCS = {
    "vpn": ("VPN token", "To reset a forgotten VPN token, open the self-service portal and choose Reset token.", []),
    "laptop": ("Laptops", "New employees receive a laptop on their first day from the IT desk.", []),
    "error": ("Errors", "Error code ERR-4042 means the certificate on your device has expired.", []),
    "salary": ("Salary bands", "Salary band B3 pays between 60k and 80k a year; bonus targets are 10 percent.", ["hr"]),
    "root": ("Admin runbook", "Rotate the root credentials of the VPN concentrator every month.", ["it-admins"]),
    "leave": ("年假", "员工年休假天数根据累计工作年限确定，满一年不满十年的，年休假五天。", []),
}


@pytest.fixture(scope="module")
def index(embedder, tmp_path_factory):
    idx = KnowledgeIndex(tmp_path_factory.mktemp("idx"), embedder.info(), {})
    for key, (title, text, acl) in DOCS.items():
        doc = Document(doc_id=key, source=f"/kb/{key}.md", title=title, text=text,
                       meta={"acl": acl, "content_hash": key, "format": "md"})
        chunks = chunk(doc, embedder.count_tokens, max_tokens=128)
        idx.replace_document(doc, chunks, embedder.embed_passages([c.context_text() for c in chunks]))
    idx.save()
    return idx


def top_doc(result):
    return result.hits[0].chunk.doc_id


def test_dense_finds_paraphrases(index, embedder):
    res = recall(index, embedder, "I forgot my remote access code, how do I get a new one?", 3, "dense")
    assert top_doc(res) == "vpn" and res.hits[0].leg == "dense"
    assert res.timings_ms["embed"] > 0


def test_lexical_finds_exact_codes_and_chinese(index, embedder):
    assert top_doc(recall(index, embedder, "ERR-4042", 3, "lexical")) == "error"
    assert top_doc(recall(index, embedder, "年休假几天", 3, "lexical")) == "leave"


def test_hybrid_labels_legs(index, embedder):
    res = recall(index, embedder, "reset VPN token", 6, "hybrid")
    assert top_doc(res) == "vpn"
    assert res.hits[0].leg == "both" and res.hits[0].dense_rank and res.hits[0].lexical_rank
    assert all(h.leg in ("dense", "lexical", "both") for h in res.hits)
    assert [h.retrieval_score for h in res.hits] == sorted((h.retrieval_score for h in res.hits), reverse=True)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_groups_never_leak(index, embedder, mode):
    queries = ["salary band B3 bonus", "root credentials VPN concentrator", "VPN", "薪资", "what do I earn"]
    for q in queries:
        for groups, forbidden in (([], {"salary", "root"}), (["hr"], {"root"}), (["it-admins"], {"salary"})):
            got = {h.chunk.doc_id for h in recall(index, embedder, q, 50, mode, groups).hits}
            assert not got & forbidden, (q, groups, got)
    assert "salary" in {h.chunk.doc_id for h in recall(index, embedder, "salary band B3", 5, mode, ["hr"]).hits}


def test_bad_mode_and_k(index, embedder):
    with pytest.raises(ValueError, match="mode"):
        recall(index, embedder, "x", 5, "fuzzy")
    with pytest.raises(ValueError, match="top_k"):
        recall(index, embedder, "x", 0)


@pytest.mark.parametrize("given", ["packaged", "folder"])
def test_an_embedder_that_cannot_read_chinese_leaves_it_to_bm25(index, embedder, minilm_path, given):
    # The same model given by its packaged name or as a folder path, the way a user points at any local model:
    # the guard reads the tokenizer, not the name.
    model = embedder if given == "packaged" else Embedder(str(minilm_path)).load()
    res = recall(index, model, "年休假几天", 5, "hybrid")
    assert res.mode == "lexical" and "cannot read this query's Chinese" in res.note
    assert top_doc(res) == "leave" and all(h.leg == "lexical" for h in res.hits)
    assert recall(index, model, "annual leave days", 5, "hybrid").mode == "hybrid"
    dense = recall(index, model, "年休假几天", 5, "dense")  # asked for by name: served, with the warning
    assert dense.mode == "dense" and "close to random" in dense.note and all(h.leg == "dense" for h in dense.hits)
