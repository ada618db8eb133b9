"""Synonyms widen the lexical leg below the user's own words; a user dictionary keeps names whole; a changed
dictionary re-analyses BM25 from the stored text (no re-embedding) and is recorded in the manifest; bad lines are
reported with their line numbers and skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.services.library import sync
from ingest.types import Chunk
from retrieval.analyzer import DEFAULT, Analyzer, DictEntry, parse_user_dict
from retrieval.index import IndexOpener, KnowledgeIndex
from retrieval.lexical import EXPANSION_WEIGHT, LexicalIndex
from retrieval.storage import current_version
from retrieval.synonyms import parse_synonyms
from retrieval.vocabulary import load_vocabulary

SYNONYMS = """# leave
年假, 年休假, annual leave
WFH，远程办公、work from home
lonely
"""


def test_synonym_file_format_and_its_problems():
    syn, problems = parse_synonyms(SYNONYMS, "synonyms.txt")
    assert syn.sets == (("年假", "年休假", "annual leave"), ("WFH", "远程办公", "work from home"))
    assert problems == ["synonyms.txt:4: 'lonely' has one term; a set needs two or more, separated by commas "
                        "(年假, 年休假, annual leave); skipped"]
    assert syn.fingerprint and syn.fingerprint != parse_synonyms("a, b")[0].fingerprint


@pytest.mark.parametrize("query, expected", [
    ("我的年假还剩几天", ["年休假", "annual leave"]),
    ("How much Annual  Leave do I get?", ["年假", "年休假"]),  # any case, any spacing
    ("wfh policy", ["远程办公", "work from home"]),
    ("WFHX rollout", []),  # a Latin term only as a whole word
    ("年假和年休假", ["annual leave"]),  # terms the query already has are not added
    ("报销发票", []),
])
def test_expansion(query, expected):
    assert parse_synonyms(SYNONYMS)[0].expand(query) == expected


def test_synonyms_count_below_the_users_own_words():
    chunks = [Chunk(chunk_id="own", doc_id="a", text="年假申请须提前一周提交。"),
              Chunk(chunk_id="syn", doc_id="b", text="年休假申请须提前一周提交。"),
              Chunk(chunk_id="other", doc_id="c", text="报销发票须在月底前提交。")]
    lex = LexicalIndex()
    lex.set_chunks(chunks)
    plain = dict(lex.search("年假", 10))
    assert set(plain) == {"own"}  # 年假 alone never finds 年休假
    widened = dict(lex.search("年假", 10, also=["年休假"]))
    assert set(widened) == {"own", "syn"} and widened["own"] > widened["syn"]
    assert widened["syn"] == pytest.approx(EXPANSION_WEIGHT * dict(lex.search("年休假", 10))["syn"], rel=1e-5)


def test_a_user_dictionary_keeps_a_name_whole_and_sharpens_bm25():
    entries, problems = parse_user_dict("# product names\n飞书审批 10 n\n飞书\nbad line here\n", "userdict.txt")
    assert [e.word for e in entries] == ["飞书审批", "飞书"] and entries[0].freq == 10 and entries[0].tag == "n"
    assert problems == ["userdict.txt:4: 'bad line here' is not `word [frequency] [tag]` (a word has no spaces, "
                        "the frequency is a whole number, the tag is letters); skipped"]
    custom = Analyzer(entries)
    assert "飞书审批" not in DEFAULT.analyze("飞书审批流程") and "飞书审批" in custom.analyze("飞书审批流程")
    assert custom.fingerprint and DEFAULT.fingerprint == ""
    assert "飞书审批" not in DEFAULT.analyze("飞书审批")  # the process-wide jieba is left alone

    chunks = [Chunk(chunk_id="a", doc_id="a", text="飞书审批入口在工作台。"),
              Chunk(chunk_id="c", doc_id="c", text="在飞书上的请假审批入口。"),
              Chunk(chunk_id="d", doc_id="d", text="报销流程说明。")]

    def ratio(analyzer):
        lex = LexicalIndex(analyzer)
        lex.set_chunks(chunks)
        scores = dict(lex.search("飞书审批", 10))
        return scores["a"] / scores["c"]

    assert ratio(custom) > 2 * ratio(DEFAULT)  # the page about 飞书审批 now clearly beats one with the parts


def test_a_changed_dictionary_reanalyses_bm25_without_reembedding(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "oa.md").write_text("# 审批\n\n飞书审批入口在工作台，钉钉打卡异常请联系服务台。\n", encoding="utf-8")
    root = tmp_path / "index"
    sync([docs], root, embedder)
    first = current_version(root)
    manifest = json.loads((first / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["analyzer"] == {"user_dict": ""}

    custom = Analyzer([DictEntry("飞书审批"), DictEntry("钉钉打卡")])
    opened = KnowledgeIndex.open(root, embedder.info(), {}, analyzer=custom)
    assert opened.reanalyzed
    assert {"飞书审批", "钉钉打卡"} <= set(opened.lexical.tokens[0])
    assert np.array_equal(opened.dense.vectors, np.load(first / "dense" / "vectors.npy"))  # vectors as they were

    class NoEmbedding:
        """The embedder's identity without its model: any attempt to embed fails the test."""

        def __getattr__(self, name):
            if name.startswith("embed"):
                raise AssertionError("re-analysis must not embed")
            return getattr(embedder, name)

    report = sync([docs], root, NoEmbedding(), opener=IndexOpener(analyzer=custom))  # published for the dictionary
    assert report.reanalyzed and report.unchanged == 1 and report.chunks_written == 0
    second = current_version(root)
    assert second != first
    assert json.loads((second / "manifest.json").read_text())["analyzer"] == {"user_dict": custom.fingerprint}
    assert not KnowledgeIndex.open(root, embedder.info(), {}, analyzer=custom).reanalyzed
    again = sync([docs], root, NoEmbedding(), opener=IndexOpener(analyzer=custom))
    assert not again.reanalyzed and current_version(root) == second  # nothing to do: nothing published

    twin = KnowledgeIndex.open(root, embedder.info(), {}, analyzer=custom).with_analyzer(DEFAULT)
    assert "飞书审批" not in twin.lexical.tokens[0] and twin.chunks and twin.dense is not None


def test_vocabulary_files_missing_unreadable_and_stamped(tmp_path):
    none = load_vocabulary(tmp_path / "absent.txt", tmp_path / "absent-too.txt")
    assert none.analyzer is DEFAULT and not none.synonyms.sets and none.problems == () and none.stamp == (None, None)
    (tmp_path / "userdict.txt").write_bytes("飞书审批\n".encode("gbk"))  # not UTF-8
    (tmp_path / "synonyms.txt").write_text(SYNONYMS, encoding="utf-8")
    vocab = load_vocabulary(tmp_path / "userdict.txt", tmp_path / "synonyms.txt")
    assert vocab.analyzer is DEFAULT and len(vocab.synonyms.sets) == 2
    assert any("userdict.txt: cannot be read" in p and "UTF-8" in p for p in vocab.problems)
    assert any("synonyms.txt:4" in p for p in vocab.problems)
    assert vocab.stamp[0] is not None and vocab.stamp[1] is not None
    assert vocab.counts == {"user_dict": 0, "synonyms": 2}
