"""Loaders on real files built here: HTML, PDF (reportlab), DOCX (python-docx), Markdown, text in many encodings."""

from __future__ import annotations

import io
import os

import docx
import pytest
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from ingest import IngestError, chunk, load

HTML = """<!doctype html><html><head><title>VPN access | Example Intranet</title><style>.x{color:red}</style>
<script>var secret = "tracking";</script></head><body>
<nav><a href="/">Home</a> | <a href="/it">IT</a></nav>
<h1>VPN access</h1><p>Reset your token &amp; PIN at the <b>self-service</b> portal.</p>
<!-- internal comment: do not index -->
<h2>Steps</h2><ul><li>Open the portal</li><li>Choose &quot;Reset token&quot;</li></ul>
<table><tr><th>Region</th><th>Helpdesk</th></tr><tr><td>EU</td><td>ext. 4410</td></tr></table>
<footer>© Example Corp — all rights reserved</footer></body></html>"""


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def make_pdf(path, pages: list[list[str]], header: str | None = None):
    c = canvas.Canvas(str(path), pagesize=A4)
    for n, lines in enumerate(pages, start=1):
        y = 800
        if header:
            c.drawString(72, 820, f"{header} - page {n}")
        for line in lines:
            c.drawString(72, y, line)
            y -= 16
        c.showPage()
    c.save()
    return path


def test_html_drops_boilerplate_and_keeps_structure(tmp_path):
    doc = load(write(tmp_path, "vpn.html", HTML.encode()))
    assert doc.title == "VPN access"  # the <h1>, not the <title> with the site's name
    for gone in ("tracking", "color:red", "Home", "internal comment", "all rights reserved"):
        assert gone not in doc.text
    assert "# VPN access" in doc.text and "## Steps" in doc.text
    assert "Reset your token & PIN at the self-service portal." in doc.text
    assert '- Choose "Reset token"' in doc.text
    assert "| Region | Helpdesk |\n| EU | ext. 4410 |" in doc.text  # rows stay one block
    assert '- Open the portal\n- Choose "Reset token"' in doc.text
    assert doc.meta["format"] == "html"


def test_deeply_nested_html_is_read_or_refused_cleanly(tmp_path):
    page = "<html><body>" + "<div>" * 10_000 + "deep text" + "</div>" * 10_000 + "<p>after</p></body></html>"
    path = write(tmp_path, "deep.html", page.encode())
    try:
        doc = load(path)
    except IngestError as exc:
        assert "deep.html" in str(exc)
    else:
        assert "after" in doc.text


def test_pdf_pages_and_running_headers(tmp_path, count_tokens):
    topics = ["Hotels are booked through the travel desk.", "Meals abroad are paid by a daily allowance.",
              "Taxi receipts must show the route and the fare.", "Claims are filed within thirty days of travel."]
    pages = [[f"Expense rule number {n}.", topics[n - 1], "Questions go to the finance team."] for n in range(1, 5)]
    path = make_pdf(tmp_path / "expenses.pdf", pages, header="Example Corp Expense Policy")
    doc = load(path)
    assert doc.meta["pages"] == 4 and len(doc.meta["page_offsets"]) == 4
    assert "Expense Policy - page" not in doc.text  # repeated header removed
    assert "Questions go to the finance team." not in doc.text  # repeated footer removed
    assert "Expense rule number 3." in doc.text  # body lines that differ only by a number stay
    chunks = chunk(doc, count_tokens, max_tokens=40, overlap=0)
    assert {c.page for c in chunks if "Taxi receipts" in c.text} == {3}


@pytest.mark.parametrize("kind", ["encrypted", "truncated", "random", "zero"])
def test_broken_pdfs_raise_ingest_error(tmp_path, kind):
    good = make_pdf(tmp_path / "good.pdf", [["hello world"] * 5] * 3)
    if kind == "encrypted":
        writer = PdfWriter(clone_from=PdfReader(good))
        writer.encrypt(user_password="s3cret", owner_password="owner")
        buf = io.BytesIO()
        writer.write(buf)
        data = buf.getvalue()
    elif kind == "truncated":
        data = good.read_bytes()[: len(good.read_bytes()) // 3]
    elif kind == "random":
        data = b"%PDF-1.7\n" + os.urandom(4000)
    else:
        data = b""
    with pytest.raises(IngestError) as info:
        load(write(tmp_path, f"{kind}.pdf", data))
    assert f"{kind}.pdf" in str(info.value)
    if kind == "encrypted":
        assert "password" in info.value.reason


def test_docx_headings_lists_tables(tmp_path):
    d = docx.Document()
    d.add_heading("Laptop requests", level=1)
    d.add_paragraph("Request a laptop two weeks before the start date.")
    d.add_heading("Approvals", level=2)
    d.add_paragraph("Manager approval", style="List Bullet")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Model", "Budget"
    table.cell(1, 0).text, table.cell(1, 1).text = "ThinkPad T14", "1200 EUR"
    d.save(tmp_path / "laptops.docx")
    doc = load(tmp_path / "laptops.docx")
    assert doc.title == "Laptop requests"
    assert "## Approvals" in doc.text and "- Manager approval" in doc.text
    assert "| ThinkPad T14 | 1200 EUR |" in doc.text


def test_docx_that_is_not_a_zip(tmp_path):
    with pytest.raises(IngestError, match="not a zip"):
        load(write(tmp_path, "fake.docx", b"this is plain text pretending to be a docx"))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "big5"])
def test_text_encodings(tmp_path, encoding):
    text = "試用期員工離職手續說明\n員工應提前三日書面通知人力資源部門，並交還門禁卡與電腦。" if encoding == "big5" else \
        "试用期员工离职手续说明\n员工应提前三日书面通知人力资源部，并交还门禁卡和电脑。"
    doc = load(write(tmp_path, f"policy-{encoding}.txt", text.encode(encoding)))
    assert doc.text == text
    assert doc.title == text.split("\n")[0]
    if encoding == "gbk":
        assert doc.meta["encoding"] in ("gb18030", "gbk", "gb2312")


def test_binary_named_txt_and_empty_files(tmp_path):
    with pytest.raises(IngestError, match="binary"):
        load(write(tmp_path, "blob.txt", bytes(range(256)) * 20))
    with pytest.raises(IngestError, match="empty"):
        load(write(tmp_path, "empty.md", b""))
    with pytest.raises(IngestError, match="unsupported"):
        load(write(tmp_path, "clip.gif", b"GIF89a...."))
    with pytest.raises(IngestError, match="not a readable image"):
        load(write(tmp_path, "photo.png", b"\x89PNG...."))


def test_size_limit_is_checked_before_reading(tmp_path):
    path = write(tmp_path, "big.html", b"<p>" + b"x" * 2_000_000 + b"</p>")
    with pytest.raises(IngestError, match="over the 1 MB limit"):
        load(path, max_bytes=2**20)


def test_markdown_front_matter_and_sidecar_acl(tmp_path):
    md = "---\ntitle: Salary bands\nacl: [hr, finance]\n---\n# Bands\n\nBand **B3** ranges from [60k](x.html) to 80k.\n"
    doc = load(write(tmp_path, "bands.md", md.encode()))
    assert doc.title == "Salary bands" and doc.meta["acl"] == ["finance", "hr"]
    assert "Band B3 ranges from 60k to 80k." in doc.text
    plain = write(tmp_path, "runbook.txt", b"Admin runbook\nRotate the root keys monthly.")
    (tmp_path / "runbook.txt.meta.json").write_text('{"acl": "it-admins"}')
    assert load(plain).meta["acl"] == ["it-admins"]
    (tmp_path / "runbook.txt.meta.json").write_text("{not json")
    with pytest.raises(IngestError, match="meta.json"):
        load(plain)


def test_wrapped_chinese_pdf_lines_are_joined_but_structure_stays():
    from ingest.clean import join_wrapped_cjk_lines

    page = "第一章 总则\n第一条 为规范员工离职管理，保障公司与员工双\n方的合法权益，制定本办法。\n第二条 本办法适用于全体员工。"
    assert join_wrapped_cjk_lines(page) == \
        "第一章 总则\n第一条 为规范员工离职管理，保障公司与员工双方的合法权益，制定本办法。\n第二条 本办法适用于全体员工。"
