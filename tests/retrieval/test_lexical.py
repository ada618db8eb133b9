"""BM25 with jieba: Chinese words match inside unsegmented text, English is stemmed, filters are inside scoring."""

from __future__ import annotations

import numpy as np

from ingest.types import Chunk
from retrieval.analyzer import analyze
from retrieval.lexical import LexicalIndex


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
    loaded = LexicalIndex.load(tmp_path / "bm25")
    assert loaded.tokens == index.tokens and loaded.chunk_ids == index.chunk_ids
    for lists in (index.tokens, loaded.tokens):
        vpn = [t for toks in lists for t in toks if t == "vpn"]
        assert len(vpn) == 50 and all(t is vpn[0] for t in vpn)  # one object, not fifty
    assert loaded.search("试用期离职", 3) == index.search("试用期离职", 3)
