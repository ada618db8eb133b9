"""XLSX (openpyxl), PPTX (python-pptx) and CSV files built here: what each loader keeps, and the bad ones refused
with a reason that names the fix."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import openpyxl
import pptx
import pytest
from msoffcrypto.format.ooxml import OOXMLFile
from pptx.util import Inches

from ingest import IngestError, chunk, load
from ingest.tables import MAX_CELLS


def leave_workbook() -> openpyxl.Workbook:
    """Two sheets; the first starts one row and one column in, has an empty row, a formula, a date and a blank
    trailing column with formatting only."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "年假标准"
    ws.append([])
    ws.append([None, "工龄", "年假天数", "生效日期"])
    ws.append([None, "1-10年", 5, dt.date(2026, 1, 1)])
    ws.append([])
    ws.append([None, "10-20年", "=C3*3", dt.date(2026, 1, 1)])
    ws.append([None, "20年以上", 15, dt.date(2026, 1, 1)])
    ws["F9"].number_format = "0.00"  # formatted, empty
    other = wb.create_sheet("病假")
    other.append(["连续工作年限", "病假工资比例"])
    other.append(["不满2年", "60%"])
    wb.create_sheet("空白")
    wb.properties.title = "休假标准表"
    return wb


def xlsx_bytes(wb: openpyxl.Workbook, cached: dict[str, str] | None = None) -> bytes:
    """Save `wb`; `cached` gives formulas the values Excel would have stored beside them (openpyxl writes none)."""
    buffer = io.BytesIO()
    wb.save(buffer)
    if not cached:
        return buffer.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                for formula, value in cached.items():
                    data = data.replace(f"<f>{formula}</f><v></v>".encode(), f"<f>{formula}</f><v>{value}</v>".encode())
            dst.writestr(item, data)
    return out.getvalue()


def deck_bytes() -> bytes:
    prs = pptx.Presentation()
    first = prs.slides.add_slide(prs.slide_layouts[1])
    first.shapes.title.text = "VPN 远程接入"
    first.placeholders[1].text = "Install the client from the portal\nSign in with your badge number"
    first.notes_slide.notes_text_frame.text = "Remind everyone: hardware tokens expire after 90 days.\nQuestions to IT."
    second = prs.slides.add_slide(prs.slide_layouts[5])
    second.shapes.title.text = "Helpdesk numbers"
    table = second.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(1.5)).table
    for r, row in enumerate([["Region", "Extension"], ["Europe", "4410"], ["Americas", "5520"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    group = second.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(5), Inches(4), Inches(1)).text_frame.text = "Open 8:00-18:00 CET"
    untitled = prs.slides.add_slide(prs.slide_layouts[6])  # blank layout: no title placeholder
    untitled.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1)).text_frame.text = "Thank you"
    buffer = io.BytesIO()
    prs.save(buffer)
    return buffer.getvalue()


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def reason(path) -> str:
    with pytest.raises(IngestError) as info:
        load(path)
    assert info.value.path == str(path.resolve()) or info.value.path.endswith(path.name)
    return info.value.reason


def test_xlsx_sheets_are_sections_with_their_table(tmp_path):
    doc = load(write(tmp_path, "leave.xlsx", xlsx_bytes(leave_workbook(), cached={"C3*3": "15"})))
    assert doc.title == "休假标准表" and doc.meta["format"] == "xlsx" and doc.meta["sheets"] == 3
    assert doc.text == (
        "# 年假标准\n\n"
        "| 工龄 | 年假天数 | 生效日期 |\n"
        "| 1-10年 | 5 | 2026-01-01 |\n"
        "| 10-20年 | 15 | 2026-01-01 |\n"  # the formula's cached value
        "| 20年以上 | 15 | 2026-01-01 |\n\n"
        "# 病假\n\n"
        "| 连续工作年限 | 病假工资比例 |\n"
        "| 不满2年 | 60% |"
    )


def test_xlsx_formula_never_calculated_reads_empty_not_as_its_source(tmp_path):
    doc = load(write(tmp_path, "leave.xlsx", xlsx_bytes(leave_workbook())))
    assert "| 10-20年 | | 2026-01-01 |" in doc.text and "=C3" not in doc.text


def test_pptx_slides_titles_tables_groups_and_notes(tmp_path, count_tokens):
    doc = load(write(tmp_path, "vpn.pptx", deck_bytes()))
    assert doc.title == "VPN 远程接入" and doc.meta["slides"] == 3
    assert doc.text == (
        "# VPN 远程接入\n\n"
        "Install the client from the portal\nSign in with your badge number\n\n"
        "Speaker notes: Remind everyone: hardware tokens expire after 90 days.\nQuestions to IT.\n\n"
        "# Helpdesk numbers\n\n"
        "| Region | Extension |\n| Europe | 4410 |\n| Americas | 5520 |\n\n"
        "Open 8:00-18:00 CET\n\n"
        "# Slide 3\n\n"
        "Thank you"
    )
    chunks = chunk(doc, count_tokens, max_tokens=64, overlap=8)

    def where(text: str) -> tuple[int | None, str, str]:
        [found] = [c for c in chunks if text in c.text]
        return found.page, found.title, found.section

    assert where("Speaker notes: Remind everyone") == (1, "VPN 远程接入", "")  # the first slide names the deck
    assert where("| Europe | 4410 |") == (2, "VPN 远程接入", "Helpdesk numbers")
    assert where("Thank you") == (3, "VPN 远程接入", "Slide 3")


def test_csv_encoding_delimiter_and_header(tmp_path):
    gbk = write(tmp_path, "年假.csv", "工龄;年假天数;备注\n1-10年;5天;\n10-20年;15天;含\"法定\"假日\n".encode("gbk"))
    doc = load(gbk)
    assert doc.title == "年假" and doc.meta["encoding"] in ("gb18030", "gbk")
    assert doc.text == "| 工龄 | 年假天数 | 备注 |\n| 1-10年 | 5天 | |\n| 10-20年 | 15天 | 含\"法定\"假日 |"
    tsv = load(write(tmp_path, "ext.tsv", b"Region\tExtension\nEurope, North\t4410\n"))
    assert tsv.text == "| Region | Extension |\n| Europe, North | 4410 |"


def test_password_protected_xlsx_is_refused_with_the_fix(tmp_path):
    encrypted = io.BytesIO()
    OOXMLFile(io.BytesIO(xlsx_bytes(leave_workbook()))).encrypt("s3cret", encrypted)
    why = reason(write(tmp_path, "salaries.xlsx", encrypted.getvalue()))
    assert "password-protected" in why and "save an unprotected copy" in why


@pytest.mark.parametrize("name", ["broken.xlsx", "broken.pptx", "broken.docx"])
def test_corrupt_office_files_are_refused_with_a_reason(tmp_path, name):
    good = xlsx_bytes(leave_workbook()) if name.endswith("xlsx") else deck_bytes()
    truncated = reason(write(tmp_path, name, good[: len(good) // 2]))
    assert "zip" in truncated and "re-save" in truncated
    wrong_kind = reason(write(tmp_path, "other-" + name, deck_bytes() if name.endswith("xlsx") else
                              xlsx_bytes(leave_workbook())))
    assert "not a" in wrong_kind and name.rsplit(".", 1)[1].upper() in wrong_kind


def test_a_damaged_sheet_inside_a_valid_zip_is_refused(tmp_path):
    good = io.BytesIO(xlsx_bytes(leave_workbook()))
    out = io.BytesIO()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, data[: len(data) // 2] if item.filename == "xl/worksheets/sheet1.xml" else data)
    why = reason(write(tmp_path, "damaged.xlsx", out.getvalue()))
    assert "damaged XLSX" in why and "re-save" in why


@pytest.mark.slow
def test_sheets_over_the_cell_limit_are_refused_naming_sheet_and_row(tmp_path):
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("导出")
    per_row = 10
    for i in range(MAX_CELLS // per_row + 1):
        ws.append([i] * per_row)
    buffer = io.BytesIO()
    wb.save(buffer)
    why = reason(write(tmp_path, "export.xlsx", buffer.getvalue()))
    assert f"{MAX_CELLS:,} non-empty cells" in why and "sheet '导出'" in why and f"row {MAX_CELLS // per_row + 1:,}" in why
    csv_rows = "\n".join(",".join(["1"] * per_row) for _ in range(MAX_CELLS // per_row + 1))
    why = reason(write(tmp_path, "export.csv", csv_rows.encode()))
    assert f"{MAX_CELLS:,} non-empty cells" in why and "split it" in why


def test_a_wide_sparse_sheet_is_read(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A1"], ws["B1"] = "Item", "Owner"
    ws["A2"], ws["B2"] = "Laptop", "IT"
    ws["XFD70"] = "stray"  # column 16,384: a whole row of empty cells in between is not data
    doc = load(write(tmp_path, "sparse.xlsx", xlsx_bytes(wb)))
    assert "| Item | Owner | |\n| Laptop | IT | |\n| | | stray |" in doc.text


def test_an_xlsx_zip_bomb_is_refused_before_parsing(tmp_path):
    good = io.BytesIO(xlsx_bytes(leave_workbook()))
    out = io.BytesIO()
    bomb = b"<row/>" * 5_000_000  # 30 MB of XML that deflates to a few tens of KB
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<sheetData>", b"<sheetData>" + bomb, 1)
            dst.writestr(item, data)
    why = reason(write(tmp_path, "bomb.xlsx", out.getvalue()))
    assert "zip bomb" in why and "xl/worksheets/sheet1.xml" in why
