"""Synonyms are scored as a search engine's synonym query (a rule is one term: one document frequency, summed term
frequencies, multi-word terms as phrases; one-way rules replace what the query said); a user dictionary keeps names
whole; a changed dictionary re-analyses BM25 from the stored text (no re-embedding) and is recorded in the manifest;
bad lines are reported with their line numbers and skipped."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from app.services.library import sync
from ingest.types import Chunk
from retrieval.analyzer import DEFAULT, Analyzer, DictEntry, parse_user_dict
from retrieval.index import IndexOpener, KnowledgeIndex
from retrieval.lexical import BIGRAM_WEIGHT, K1, B, LexicalIndex
from retrieval.storage import current_version
from retrieval.synonyms import Rule, parse_synonyms
from retrieval.vocabulary import load_vocabulary

SYNONYMS = """# leave
年假, 年休假, annual leave
WFH，远程办公、work from home
lonely
OOO, out of office => 休假
=> nothing
a => b => c
"""


def test_synonym_file_format_and_its_problems():
    syn, problems = parse_synonyms(SYNONYMS, "synonyms.txt")
    assert syn.rules == (Rule(("年假", "年休假", "annual leave"), ("年假", "年休假", "annual leave")),
                         Rule(("WFH", "远程办公", "work from home"), ("WFH", "远程办公", "work from home")),
                         Rule(("OOO", "out of office"), ("休假",)))
    assert problems == ["synonyms.txt:4: 'lonely' has one term; a set needs two or more, separated by commas "
                        "(年假, 年休假, annual leave); skipped"] + [
        f"synonyms.txt:{n}: {line!r} is not a rule `terms => terms` (wfh, work from home => 远程办公): one '=>' "
        "with a term or more on each side; skipped" for n, line in ((6, "=> nothing"), (7, "a => b => c"))]
    assert syn.fingerprint and syn.fingerprint != parse_synonyms("a, b")[0].fingerprint
    assert parse_synonyms("a, b")[0].fingerprint != parse_synonyms("a => b")[0].fingerprint


@pytest.mark.parametrize("query, expected", [
    ("我的年假还剩几天", ["年休假", "annual leave"]),
    ("How much Annual  Leave do I get?", ["年假", "年休假"]),  # any case, any spacing
    ("wfh policy", ["远程办公", "work from home"]),
    ("WFHX rollout", []),  # a Latin term only as a whole word
    ("年假和年休假", ["annual leave"]),  # terms the query already has are not added
    ("报销发票", []),
    ("I am out of office", ["休假"]),  # a one-way rule: what the query said is searched as its right side
    ("休假申请", []),  # ... and never the other way
])
def test_expansion(query, expected):
    assert parse_synonyms(SYNONYMS)[0].expand(query) == expected


def _index(*texts: str, bigram_weight: float = BIGRAM_WEIGHT) -> LexicalIndex:
    lex = LexicalIndex(bigram_weight=bigram_weight)
    lex.set_chunks([Chunk(chunk_id=f"c{i}", doc_id=f"d{i}", text=t) for i, t in enumerate(texts)])
    return lex


def _search(lex: LexicalIndex, rules: str, query: str, k: int = 10) -> dict[str, float]:
    return dict(lex.search(query, k, synonyms=parse_synonyms(rules)[0].expansions(query)))


def test_a_set_is_one_term_so_the_page_that_keeps_saying_it_wins():
    """The case the issue names: with 年假, 年休假, annual leave, "how many days of annual leave" ranked a payslip
    page (days, unpaid leave, annual tax statements scattered) above the regulation that says 年休假 throughout."""
    payslip = "Payslip: days worked, unpaid leave, and your annual tax statements."
    regulation = "职工连续工作1年以上的，享受带薪年休假。年休假天数根据累计工作时间确定。年休假一般不跨年度安排。"
    lex = _index(payslip, regulation, "报销发票须在月底前提交。", "Travel claims are paid within 10 days.")
    query = "how many days of annual leave"
    assert "c1" not in dict(lex.search(query, 10))  # without synonyms the regulation is not even found
    ranked = _search(lex, "年假, 年休假, annual leave", query)
    # The payslip keeps what it matches ("days"), but "annual" and "leave" apart are not the phrase annual leave.
    assert list(ranked)[0] == "c1" and ranked["c0"] == pytest.approx(ranked["c3"], rel=0.2)


def test_a_set_has_one_document_frequency_and_summed_term_frequencies():
    # Same length, same number of the set's terms: the same score whichever terms (the user's word is not
    # privileged, nor counted again through its synonyms).
    lex = _index("年假 年假 年休假 报销 发票", "年休假 年休假 年休假 报销 发票", "年假 报销 发票 工资 加班", "工资 加班 报销 发票 出差",
                 bigram_weight=0)  # the words field alone; the bigram field scores the same way (test_lexical.py)
    scores = _search(lex, "年假, 年休假", "年假")
    assert scores["c0"] == pytest.approx(scores["c1"], rel=1e-6) and scores["c0"] > scores["c2"] and "c3" not in scores
    # BM25 of one term at term frequency 3 and 1 (Lucene's formula, k1 and b as the index), whose document
    # frequency is its most frequent member's (each of 年假 and 年休假 is in 2 of the 4 chunks), as Lucene takes it.
    idf = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5))
    lengths = [len(t) for t in lex.tokens]
    norm = [K1 * (1 - B + B * n / (sum(lengths) / 4)) for n in lengths]
    assert scores["c1"] == pytest.approx(idf * 3 / (3 + norm[1]), rel=1e-5)
    assert scores["c2"] == pytest.approx(idf * 1 / (1 + norm[2]), rel=1e-5)


def test_term_frequencies_are_read_back_exactly_from_the_index():
    # A rule of one term scores as that term does on its own, at any frequency and length.
    texts = [" ".join(["leave"] * n + ["filler"] * (3 * n % 17)) for n in range(1, 120, 7)] + ["nothing here"]
    lex = _index(*texts)
    assert _search(lex, "absence => leave", "absence", 50) == pytest.approx(dict(lex.search("leave", 50)), rel=1e-5)


def test_a_multi_word_synonym_matches_as_a_phrase():
    lex = _index("Annual leave requests go to HR.", "Leave the annual report on the desk.", "年休假的规定")
    assert set(_search(lex, "年休假, annual leave", "年休假")) == {"c0", "c2"}  # words apart are not the phrase


def test_a_one_way_rule_searches_its_right_side_in_place_of_what_was_said():
    lex = _index("WFH is allowed on Fridays.", "远程办公须经主管批准。", "Fridays are casual.")
    assert list(_search(lex, "wfh => 远程办公", "wfh")) == ["c1"]
    assert set(_search(lex, "wfh => wfh, 远程办公", "wfh")) == {"c0", "c1"}  # kept when the rule says so
    assert list(_search(lex, "wfh => 远程办公", "远程办公")) == ["c1"]  # one way only


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
        lex = LexicalIndex(analyzer, bigram_weight=0)  # the words field, which the dictionary cuts
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
    assert none.analyzer is DEFAULT and not none.synonyms.rules and none.problems == () and none.stamp == (None, None)
    (tmp_path / "userdict.txt").write_bytes("飞书审批\n".encode("gbk"))  # not UTF-8
    (tmp_path / "synonyms.txt").write_text(SYNONYMS, encoding="utf-8")
    vocab = load_vocabulary(tmp_path / "userdict.txt", tmp_path / "synonyms.txt")
    assert vocab.analyzer is DEFAULT and len(vocab.synonyms.rules) == 3
    assert any("userdict.txt: cannot be read" in p and "UTF-8" in p for p in vocab.problems)
    assert any("synonyms.txt:4" in p for p in vocab.problems)
    assert vocab.stamp[0] is not None and vocab.stamp[1] is not None
    assert vocab.counts == {"user_dict": 0, "synonyms": 3}
