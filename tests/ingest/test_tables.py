"""Tables keep their header: row lines from the loaders, and chunks (MiniLM's real tokenizer) that repeat the
caption and header row above every piece of a table and never cut a row that fits."""

from __future__ import annotations

import datetime as dt
import io

import docx
import pytest

from ingest import Document, chunk, context_text, load
from ingest.tables import cell_text, find_tables, layout_tables, splice_tables, table_lines

HEAD = "Table: 年假标准\n| 工龄 | 年假天数 | 说明 |"


def make_doc(text: str, title: str = "员工休假制度") -> Document:
    return Document(doc_id="t" * 16, source="/kb/leave.md", title=title, text=text, meta={"acl": []})


def leave_rows(n: int) -> list[str]:
    return [f"| 工龄{i}年至{i + 1}年 | {5 + i}天 | 第{i}档 employees with {i} full years of service |" for i in range(n)]


def long_table_doc(n_rows: int = 80) -> tuple[Document, list[str]]:
    rows = leave_rows(n_rows)
    text = "# 第三章 年休假\n\n年休假按工龄计算，见下表。\n\n" + HEAD + "\n| --- | --- | --- |\n" + "\n".join(rows) + \
        "\n\n表外说明：国家法定休假日不计入年休假。"
    return make_doc(text), rows


def test_table_lines_skip_empty_rows_and_columns_and_keep_one_line_per_row():
    rows = [[None, "工龄", None, "年假天数"], [None, None, None, None], [None, "10年以上\n不满20年", "", 15.0],
            [None, "a|b", None, dt.datetime(2026, 1, 1)]]
    assert table_lines(rows, caption="年假 标准") == [
        "Table: 年假 标准", "| 工龄 | 年假天数 |", "| 10年以上 不满20年 | 15 |", "| a\\|b | 2026-01-01 |"]
    assert table_lines([[None, ""], []]) == []
    assert cell_text(2.5) == "2.5" and cell_text(None) == ""


def test_find_tables_needs_a_header_and_a_data_row():
    text = "intro\n" + HEAD + "\n| --- | --- | --- |\n| 1年 | 5天 | x |\n\n| lone | row |\nend"
    [table] = find_tables(text)
    assert table.head == HEAD  # the separator belongs to the header and is not repeated
    assert text[table.start:].startswith("Table: 年假标准")
    assert [text[a:b] for a, b in table.rows] == ["| 1年 | 5天 | x |"]


@pytest.mark.parametrize("max_tokens", [128, 256])
def test_every_chunk_of_a_long_table_starts_with_caption_and_header_and_no_row_is_split(count_tokens, max_tokens):
    doc, rows = long_table_doc()
    chunks = chunk(doc, count_tokens, max_tokens=max_tokens, overlap=16)
    table_chunks = [c for c in chunks if "| 工龄" in c.text and c.text != HEAD]
    assert len(table_chunks) >= 3  # the table really needed several chunks
    seen = []
    for c in chunks:
        assert c.n_tokens == count_tokens(c.context_text()) <= max_tokens
        assert c.section == "第三章 年休假"
    for c in table_chunks:
        assert c.text.startswith(HEAD + "\n"), c.text[:80]
        body = c.text.split("\n")[2:]
        assert all(line in rows for line in body), body  # whole rows only, no prose mixed in
        seen += body
    assert seen == rows  # every row once, in order
    prose = [c.text for c in chunks if c not in table_chunks]
    assert any("见下表" in t for t in prose) and any("表外说明" in t for t in prose)


def test_a_row_too_long_for_one_chunk_is_cut_under_the_header(count_tokens):
    long_note = "；".join(f"第{i}项特殊情形按当年实际工作月份折算年休假天数" for i in range(40))
    text = HEAD + "\n| 1年 | 5天 | 短 |\n| 特殊情形 | 另计 | " + long_note + " |\n| 20年 | 15天 | 短 |"
    chunks = chunk(make_doc(text), count_tokens, max_tokens=128, overlap=16)
    assert len(chunks) >= 4
    for c in chunks:
        assert c.text.startswith(HEAD + "\n") and count_tokens(c.context_text()) <= 128
    assert chunks[0].text.endswith("| 1年 | 5天 | 短 |") and chunks[-1].text.endswith("| 20年 | 15天 | 短 |")


def test_a_header_wider_than_half_the_budget_is_not_repeated(count_tokens):
    header = "| " + " | ".join(f"column number {i} of the export" for i in range(30)) + " |"
    rows = ["| " + " | ".join(str(i * j) for j in range(30)) + " |" for i in range(20)]
    doc = make_doc(header + "\n" + "\n".join(rows), title="Export")
    chunks = chunk(doc, count_tokens, max_tokens=128, overlap=16)
    assert all(count_tokens(c.context_text()) <= 128 for c in chunks)
    assert sum(c.text.count("column number 0 ") for c in chunks) == 1  # packed as plain text, nothing lost
    assert all(any(r in c.text for c in chunks) for r in rows)


def test_html_caption_and_docx_caption_travel_with_every_chunk(tmp_path, count_tokens):
    rows_html = "".join(f"<tr><td>工龄{i}年</td><td>{5 + i}天</td></tr>" for i in range(60))
    page = ("<html><body><h1>休假制度</h1><h2>年休假</h2><table><caption>表1 年假天数</caption>"
            f"<thead><tr><th>工龄</th><th>年假天数</th></tr></thead><tbody>{rows_html}</tbody></table></body></html>")
    (tmp_path / "leave.html").write_text(page, encoding="utf-8")
    document = docx.Document()
    document.add_heading("休假制度", level=1)
    document.add_paragraph("表1 年假天数", style="Caption")
    table = document.add_table(rows=61, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "工龄", "年假天数"
    for i in range(60):
        table.cell(i + 1, 0).text, table.cell(i + 1, 1).text = f"工龄{i}年", f"{5 + i}天"
    buffer = io.BytesIO()
    document.save(buffer)
    (tmp_path / "leave.docx").write_bytes(buffer.getvalue())
    for name in ("leave.html", "leave.docx"):
        chunks = chunk(load(tmp_path / name), count_tokens, max_tokens=128, overlap=16)
        assert len(chunks) >= 3, name
        for c in chunks:
            assert c.text.startswith("Table: 表1 年假天数\n| 工龄 | 年假天数 |\n"), (name, c.text[:60])
        assert "| 工龄59年 | 64天 |" in chunks[-1].text



def table_pdf(path, n_rows: int) -> None:
    """A policy page whose table is only text placed in columns (no ruling lines), as Word exports often are."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    c = canvas.Canvas(str(path), pagesize=A4)
    c.setFont("STSong-Light", 10)
    y = 800
    for line in ("第五条 年休假天数按下表执行：", "表1 年休假天数"):
        c.drawString(72, y, line)
        y -= 16
    rows = [("工龄", "年假天数", "备注")] + [(f"工龄{i}年", f"{5 + i}天", "含本数" if i % 2 else "") for i in range(n_rows)]
    for row in rows:
        for x, value in zip((72, 200, 330), row):
            c.drawString(x, y, value)
        y -= 14
    c.drawString(72, y - 10, "第六条 年休假可在当年度内分段使用。")
    c.save()


def test_a_pdf_table_drawn_as_text_comes_back_as_rows_under_its_header(tmp_path, count_tokens):
    path = tmp_path / "leave.pdf"
    table_pdf(path, n_rows=40)
    doc = load(path)
    assert "第五条 年休假天数按下表执行：\n\nTable: 表1 年休假天数\n| 工龄 | 年假天数 | 备注 |\n| 工龄0年 | 5天 | |\n" \
           "| 工龄1年 | 6天 | 含本数 |" in doc.text
    assert "| 工龄39年 | 44天 | 含本数 |\n\n第六条 年休假可在当年度内分段使用。" in doc.text
    chunks = chunk(doc, count_tokens, max_tokens=128, overlap=16)
    table_chunks = [c for c in chunks if "| 工龄" in c.text]
    assert len(table_chunks) >= 3 and all(c.page == 1 for c in chunks)
    for c in table_chunks:
        assert c.text.startswith("Table: 表1 年休假天数\n| 工龄 | 年假天数 | 备注 |\n")
    assert sum(c.text.count("| 工龄17年 | 22天 | 含本数 |") for c in chunks) == 1


def test_layout_columns_that_are_not_a_table_leave_the_text_alone():
    prose = ("The annual leave year runs from  January to December and unused days\n"
             "may be carried  over once, up to five days, with the  approval of a manager\n"
             "who records it in the  HR system before the end of March of the next year")
    assert layout_tables(prose) == []
    table = [["工龄", "年假天数"], ["1-10年", "5天"], ["10-20年", "15天"]]
    assert layout_tables("工龄      年假天数\n1-10年    5天\n10-20年   15天") == [table]
    plain = "第五条 见下表\n工龄 年假天数\n1-10年 5天\n10-20年\n15天\n第六条"
    assert splice_tables(plain, [table]) == "第五条 见下表\n\n| 工龄 | 年假天数 |\n| 1-10年 | 5天 |\n| 10-20年 | 15天 |\n\n第六条"
    assert splice_tables("第五条 工龄规定另见附件", [table]) == "第五条 工龄规定另见附件"  # not found: nothing lost


@pytest.mark.parametrize("seed", range(12))
def test_random_tables_keep_the_limit_and_whole_rows(count_tokens, seed):
    """Tables of random widths and row lengths, some rows longer than a chunk, among paragraphs."""
    import random

    rng = random.Random(seed)
    words = ["年假", "工龄", "days", "leave", "manager", "审批", "本数", "carry-over", "15天", "10-20年", "说明。"]
    n_cols, budget = rng.randint(2, 6), rng.choice([64, 128, 256])
    header = "| " + " | ".join(f"列{i} column" for i in range(n_cols)) + " |"
    rows = ["| " + " | ".join(" ".join(rng.choices(words, k=rng.choice([1, 2, 3, 40]))) for _ in range(n_cols)) + " |"
            for _ in range(rng.randint(2, 40))]
    text = "# 附表\n\n前言段落。\n\n" + header + "\n" + "\n".join(rows) + "\n\n结尾段落。"
    chunks = chunk(make_doc(text), count_tokens, max_tokens=budget, overlap=8)
    head_fits = count_tokens(context_text(make_doc("").title, "附表", header)) <= budget // 2
    for c in chunks:
        assert count_tokens(c.context_text()) <= budget
        if head_fits and c.text not in ("前言段落。", "结尾段落。"):
            assert c.text.startswith(header + "\n")
    for row in rows:
        whole = sum(row in c.text.split("\n") for c in chunks)
        fits_alone = count_tokens(context_text(chunks[0].title, "附表", header + "\n" + row)) <= budget
        if head_fits and fits_alone:
            assert whole == 1, row  # a row that fits is in exactly one chunk, never cut


def test_a_title_row_above_the_header_becomes_the_caption():
    sheet = [["2026年年假标准", None, None], ["工龄", "年假天数", "备注"], ["1-10年", 5, None], ["10-20年", 15, "含本数"]]
    assert table_lines(sheet) == ["Table: 2026年年假标准", "| 工龄 | 年假天数 | 备注 |", "| 1-10年 | 5 |  |",
                                  "| 10-20年 | 15 | 含本数 |"]
    merged = [["年假标准", "年假标准"], ["工龄", "年假天数"], ["1-10年", "5天"]]  # python-docx repeats a merged cell
    assert table_lines(merged, caption="表1")[:2] == ["Table: 表1 年假标准", "| 工龄 | 年假天数 |"]
    one_column = [["Steps"], ["Open the portal"], ["Choose Reset"]]
    assert table_lines(one_column)[0] == "| Steps |"  # a one-column list keeps its header
