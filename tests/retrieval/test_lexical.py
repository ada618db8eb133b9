"""BM25 with jieba: Chinese words match inside unsegmented text, English is stemmed, filters are inside scoring; a
second field of Chinese character bigrams finds a word jieba cut otherwise, and leaves English alone."""

from __future__ import annotations

import numpy as np

from ingest.types import Chunk, Document
from retrieval.analyzer import analyze, cjk_bigrams
from retrieval.index import KnowledgeIndex
from retrieval.lexical import LexicalIndex
from retrieval.synonyms import parse_synonyms


def test_chinese_and_mixed_tokenisation():
    tokens = analyze("试用期员工离职需要办理哪些手续？")
    assert {"试用期", "离职", "手续"} <= set(tokens)
    assert "？" not in tokens and "的" not in analyze("员工的手续")
    assert analyze("Resetting VPN tokens") == ["reset", "vpn", "token"]
    assert {"vpn", "令牌", "重置"} <= set(analyze("VPN令牌如何重置"))


def test_bm25_ranks_exact_terms_and_respects_mask():
    texts = ["员工在试用期内提前三日通知用人单位，可以解除劳动合同。", "年休假天数根据工龄确定。",
             "Error ERR-4042 means the VPN token expired.", "The VPN is available worldwide."]
    chunks = [Chunk(chunk_id=f"c{i}", doc_id=f"d{i}", text=t) for i, t in enumerate(texts)]
    index = LexicalIndex()
    index.set_chunks(chunks)
    assert index.search("试用期离职", 2)[0][0] == "c0"
    assert index.search("err-4042", 2)[0][0] == "c2"
    mask = np.array([1, 1, 0, 1], dtype=np.float32)
    assert "c2" not in [cid for cid, _ in index.search("VPN token", 4, mask)]
    assert index.search("完全无关的词语 zzzz", 4) == []


def test_token_lists_share_one_string_per_term_after_a_save_and_load(tmp_path):
    chunks = [Chunk(chunk_id=f"c{i}", doc_id="d", text=f"VPN token reset number {i}. 试用期员工离职手续。")
              for i in range(50)]
    index = LexicalIndex()
    index.set_chunks(chunks)
    index.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25", chunks=chunks)
    assert loaded.tokens == index.tokens and loaded.chunk_ids == index.chunk_ids
    assert loaded.bigrams.tokens == index.bigrams.tokens and loaded.bigrams.tokens[0][:2] == ["试用", "用期"]
    for lists in (index.tokens, loaded.tokens):
        vpn = [t for toks in lists for t in toks if t == "vpn"]
        assert len(vpn) == 50 and all(t is vpn[0] for t in vpn)  # one object, not fifty
    assert loaded.search("试用期离职", 3) == index.search("试用期离职", 3)


def test_bigrams_find_a_word_that_jieba_cut_otherwise():
    chunks = [Chunk(chunk_id="shop", doc_id="a", text="乒乓球拍卖完了，请下周再来。"),
              Chunk(chunk_id="other", doc_id="b", text="羽毛球场周末开放。")]
    assert "球拍" not in analyze(chunks[0].text)  # jieba reads 乒乓球 / 拍卖
    assert cjk_bigrams("乒乓球拍 VPN 卖") == ["乒乓", "乓球", "球拍", "卖"]
    words_only = LexicalIndex(bigram_weight=0)
    words_only.set_chunks(chunks)
    both = LexicalIndex()
    both.set_chunks(chunks)
    assert words_only.search("球拍", 5) == [] and [cid for cid, _ in both.search("球拍", 5)] == ["shop"]
    # a synonym's Chinese term is a phrase of bigrams there: found where its characters stand together
    found = both.search("paddle", 5, synonyms=parse_synonyms("paddle, 球拍")[0].expansions("paddle"))
    assert [cid for cid, _ in found] == ["shop"]
    assert both.search("羽球", 5) == []  # its bigram 羽球 is nowhere: characters apart are not a match


def test_english_is_scored_by_its_words_alone():
    chunks = [Chunk(chunk_id=f"c{i}", doc_id="d", text=t) for i, t in
              enumerate(["Reset your VPN token in the portal.", "The VPN is available worldwide.", "Payroll runs monthly."])]
    words_only = LexicalIndex(bigram_weight=0)
    words_only.set_chunks(chunks)
    both = LexicalIndex()
    both.set_chunks(chunks)
    assert both.search("reset vpn token", 5) == words_only.search("reset vpn token", 5)


def test_a_saved_index_has_its_bigram_field_when_opened(tmp_path):
    from retrieval.stores.faiss import FaissStoreFactory

    emb = {"name": "test-embedder", "dim": 4, "path": None}
    index = KnowledgeIndex(tmp_path, emb, {}, FaissStoreFactory())
    doc = Document(doc_id="shop", source="/kb/shop.md", title="shop", text="乒乓球拍卖完了",
                   meta={"content_hash": "h", "format": "md"})
    index.replace_documents([(doc, [Chunk(chunk_id="shop-0", doc_id="shop", text="乒乓球拍卖完了，请下周再来。")])],
                            np.ones((1, 4), dtype=np.float32) / 2)
    version = index.save()
    assert sorted(p.name for p in (version / "lexical").iterdir()) == ["tokens.jsonl"]  # bigrams are made, not read
    opened = KnowledgeIndex.open(tmp_path, emb, {})
    assert [c.chunk_id for c, _ in opened.lexical_hits("球拍", 5)] == ["shop-0"]
