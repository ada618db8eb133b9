"""Chunking with MiniLM's real tokenizer: the token limit holds, articles stay whole, headings travel along."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest import Document, chunk, context_text, load

LAW_DIR = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "cn-labor-law"
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
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
    chunks = chunk(make_doc(text, title="Leave"), count_tokens, max_tokens=128, min_tokens=0)
    by_section = {c.section: c.text for c in chunks}
    assert by_section["Annual leave"] == "- 20 days a year\n- carry over 5 days"
    assert by_section["Sick leave"] == "Call in."


def test_ids_are_stable_and_change_with_content(count_tokens):
    doc = make_doc("# A\n\nFirst paragraph.\n\n# B\n\nSecond paragraph.")
    first = [c.chunk_id for c in chunk(doc, count_tokens, max_tokens=64, overlap=8, min_tokens=0)]
    assert first == [c.chunk_id for c in chunk(doc, count_tokens, max_tokens=64, overlap=8, min_tokens=0)]
    edited = make_doc("# A\n\nFirst paragraph.\n\n# B\n\nSecond paragraph, edited.")
    second = [c.chunk_id for c in chunk(edited, count_tokens, max_tokens=64, overlap=8, min_tokens=0)]
    assert first[0] == second[0] and first[1] != second[1]


STEPS = "\n".join(f"- Step {i}: open the portal, choose Security, then VPN token, then confirm with code {i}."
                  for i in range(1, 5))
RELATED = "New employees need nothing: see the onboarding guide."


def test_a_short_section_joins_the_chunk_before_it(count_tokens):
    text = f"# Reset your token\n\n## Steps\n\n{STEPS}\n\n## Related\n\n{RELATED}"
    joined = chunk(make_doc(text, title="Reset your token"), count_tokens, max_tokens=256, min_tokens=48)
    assert [c.section for c in joined] == ["Steps · Related"]
    assert joined[0].text.endswith(f"- Step 4: open the portal, choose Security, then VPN token, then confirm with "
                                   f"code 4.\n\n## Related\n\n{RELATED}")  # its heading stays in the text
    alone = chunk(make_doc(text, title="Reset your token"), count_tokens, max_tokens=256, min_tokens=0)
    assert [(c.section, c.text) for c in alone][-1] == ("Related", RELATED)


def test_a_short_first_section_opens_a_chunk_the_next_section_joins(count_tokens):
    text = f"## Contact\n\nCall extension 8000.\n\n## Steps\n\n{STEPS}"
    chunks = chunk(make_doc(text), count_tokens, max_tokens=256, min_tokens=48)
    assert [c.section for c in chunks] == ["Contact · Steps"]
    assert chunks[0].text.startswith("Call extension 8000.\n\n## Steps\n\n- Step 1")


def test_sections_of_enough_text_or_that_do_not_fit_stay_apart(count_tokens):
    text = f"## Steps\n\n{STEPS}\n\n## More steps\n\n{STEPS}"
    assert [c.section for c in chunk(make_doc(text), count_tokens, max_tokens=256, min_tokens=48)] == \
        ["Steps", "More steps"]  # neither is short
    text = f"## Steps\n\n{STEPS}\n\n## Related\n\n{RELATED}"
    steps_alone = count_tokens(context_text("Policy", "Steps", STEPS))
    budget = steps_alone + 4  # room for the steps, not for the related line beside them
    chunks = chunk(make_doc(text), count_tokens, max_tokens=budget, min_tokens=budget // 4)
    assert [c.section for c in chunks] == ["Steps", "Related"]
    assert all(count_tokens(c.context_text()) <= budget for c in chunks)


def test_tables_and_page_breaks_keep_short_sections_apart(count_tokens):
    table = "## Helpdesk numbers\n\n| Region | Extension |\n| --- | --- |\n| Asia | 8000 |\n| Europe | 4410 |"
    chunks = chunk(make_doc(f"{table}\n\n## Related\n\n{RELATED}"), count_tokens, max_tokens=256, min_tokens=48)
    assert [c.section for c in chunks][-1] == "Related" and all(RELATED not in c.text for c in chunks[:-1])

    text = f"## Steps\n\n{STEPS}\n\n## Related\n\n{RELATED}"
    page_two = text.index("## Related")
    doc = Document(doc_id="d" * 16, source="/x/policy.pdf", title="Policy", text=text,
                   meta={"acl": [], "page_offsets": [0, page_two]})
    chunks = chunk(doc, count_tokens, max_tokens=256, min_tokens=48)
    assert [(c.section, c.page) for c in chunks] == [("Steps", 1), ("Related", 2)]  # cited on its own page


def test_the_sample_vpn_page_has_no_one_line_chunk(count_tokens):
    """The sample page's one-sentence "Related" section alone ranked first for "how do I reset my VPN token?" in
    both recall legs: alone, the title and heading were most of its text."""
    doc = load(SAMPLES / "docs" / "it" / "vpn-token-reset-en.html")
    chunks = chunk(doc, count_tokens, max_tokens=256)
    assert all(count_tokens(c.text) >= 48 for c in chunks), [(c.section, c.text[:40]) for c in chunks]
    related = next(c for c in chunks if "New employees do not need to reset anything" in c.text)
    assert related.section.endswith(" · Related") and "hardware token" in related.text


def test_bad_budgets_are_refused(count_tokens):
    with pytest.raises(ValueError, match="max_tokens"):
        chunk(make_doc("x"), count_tokens, max_tokens=8)
    with pytest.raises(ValueError, match="overlap"):
        chunk(make_doc("x"), count_tokens, max_tokens=64, overlap=40)
    with pytest.raises(ValueError, match="min_tokens"):
        chunk(make_doc("x"), count_tokens, max_tokens=128, min_tokens=-1)
