"""Chunking with MiniLM's real tokenizer: the token limit holds, articles stay whole, headings travel along."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest import Document, chunk, load

LAW_DIR = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "cn-labor-law"
ARTICLE = re.compile(r"^第[零〇一二三四五六七八九十百千0-9]+条", re.M)


def law_docs():
    if not LAW_DIR.is_dir():
        pytest.skip(f"{LAW_DIR} not present")
    return [load(p) for p in sorted(LAW_DIR.glob("*.md")) if p.name != "README.md"]


def make_doc(text: str, title: str = "Policy") -> Document:
    return Document(doc_id="d" * 16, source="/x/policy.md", title=title, text=text, meta={"acl": []})


@pytest.mark.slow
@pytest.mark.parametrize("max_tokens", [128, 256, 512])
def test_no_chunk_exceeds_the_limit_on_real_laws(count_tokens, max_tokens):
    for doc in law_docs():
        chunks = chunk(doc, count_tokens, max_tokens=max_tokens, overlap=16)
        assert chunks, doc.source
        for c in chunks:
            assert count_tokens(c.context_text()) <= max_tokens, (doc.title, c.section, c.n_tokens)
            assert c.n_tokens == count_tokens(c.context_text())


@pytest.mark.slow
def test_articles_that_fit_are_never_split(count_tokens):
    for doc in law_docs():
        chunks = chunk(doc, count_tokens, max_tokens=256, overlap=16)
        starts = [m.start() for m in ARTICLE.finditer(doc.text)]
        for a, b in zip(starts, starts[1:] + [len(doc.text)]):
            article = doc.text[a:b].strip()
            # An article ends where the next begins; a heading in between belongs to the next section.
            article = re.split(r"\n#+ |\n第[一二三四五六七八九十]+[章节] ", "\n" + article)[0].strip() or article
            holders = [c for c in chunks if article in c.text]
            if count_tokens(f"{doc.title} › x\n{article}") < 200:
                assert len(holders) == 1, f"{doc.title}: article split: {article[:30]}"


def test_chunks_carry_title_and_heading_path(count_tokens):
    doc = next(d for d in law_docs() if d.title.endswith("劳动合同法"))
    c = next(c for c in chunk(doc, count_tokens, max_tokens=256) if "第三十七条 劳动者提前三十日" in c.text)
    assert c.title == "中华人民共和国劳动合同法"
    assert "第四章" in c.section
    assert c.context_text().startswith("中华人民共和国劳动合同法 › 第四章")


def test_long_unit_splits_on_sentences_with_overlap(count_tokens):
    sentences = [f"Rule {i} says that employees must file form {i} within {i + 2} days." for i in range(40)]
    doc = make_doc(" ".join(sentences))
    chunks = chunk(doc, count_tokens, max_tokens=64, overlap=20)
    assert len(chunks) > 3
    for c in chunks:
        assert count_tokens(c.context_text()) <= 64
        assert c.text.endswith("days.")  # cut at sentence ends, not mid-sentence
    shared = sum(1 for a, b in zip(chunks, chunks[1:]) if a.text.split(". ")[-1] in b.text)
    assert shared >= len(chunks) // 2  # consecutive pieces overlap
    assert all(s in " ".join(c.text for c in chunks) for s in sentences)  # nothing lost


def test_sentence_longer_than_the_limit_is_cut_by_tokens(count_tokens):
    doc = make_doc("离职" * 600)  # one Chinese "sentence" with no punctuation at all
    chunks = chunk(doc, count_tokens, max_tokens=100, overlap=0)
    assert all(count_tokens(c.context_text()) <= 100 for c in chunks)
    assert "".join(c.text for c in chunks) == "离职" * 600


def test_markdown_sections_and_lists(count_tokens):
    text = "# Leave\n\nIntro.\n\n## Annual leave\n\n- 20 days a year\n- carry over 5 days\n\n## Sick leave\n\nCall in."
    chunks = chunk(make_doc(text, title="Leave"), count_tokens, max_tokens=128)
    by_section = {c.section: c.text for c in chunks}
    assert by_section["Annual leave"] == "- 20 days a year\n- carry over 5 days"
    assert by_section["Sick leave"] == "Call in."


def test_ids_are_stable_and_change_with_content(count_tokens):
    doc = make_doc("# A\n\nFirst paragraph.\n\n# B\n\nSecond paragraph.")
    first = [c.chunk_id for c in chunk(doc, count_tokens, max_tokens=64, overlap=8)]
    assert first == [c.chunk_id for c in chunk(doc, count_tokens, max_tokens=64, overlap=8)]
    edited = make_doc("# A\n\nFirst paragraph.\n\n# B\n\nSecond paragraph, edited.")
    second = [c.chunk_id for c in chunk(edited, count_tokens, max_tokens=64, overlap=8)]
    assert first[0] == second[0] and first[1] != second[1]


def test_bad_budgets_are_refused(count_tokens):
    with pytest.raises(ValueError, match="max_tokens"):
        chunk(make_doc("x"), count_tokens, max_tokens=8)
    with pytest.raises(ValueError, match="overlap"):
        chunk(make_doc("x"), count_tokens, max_tokens=64, overlap=40)
