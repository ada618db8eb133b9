"""`kb ingest` and `kb search` end to end on spreadsheets, slide decks and tables built here, with the real MiniLM
embedder and BM25: a row is found with its column names, speaker notes with their slide, bad files are skipped
with their reasons while the good ones beside them are indexed."""

from __future__ import annotations

import io
import json
import os

import docx
import openpyxl
import pptx
import pytest
from msoffcrypto.format.ooxml import OOXMLFile
from typer.testing import CliRunner

from app.cli import app

runner = CliRunner()
STAFF = 120  # the directory sheet needs several chunks at MiniLM's 256-token budget


def xlsx(path, sheets: dict[str, list[list[object]]]) -> None:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)


def deck(path) -> None:
    prs = pptx.Presentation()
    intro = prs.slides.add_slide(prs.slide_layouts[1])
    intro.shapes.title.text = "IT onboarding"
    intro.placeholders[1].text = "Welcome to the company"
    slide = prs.slides.add_slide(prs.slide_layouts[1])
    slide.shapes.title.text = "Hardware tokens"
    slide.placeholders[1].text = "Every remote worker gets a token"
    slide.notes_slide.notes_text_frame.text = "Say: a lost token is replaced at the Zurich service desk within one day."
    prs.save(path)


@pytest.fixture
def office_kb(tmp_path):
    root = tmp_path / "kb"
    root.mkdir()
    xlsx(root / "休假标准.xlsx", {
        "年假标准": [["工龄", "年假天数"], ["不满1年", "0天"], ["1-10年", "5天"], ["10-20年", "15天"], ["20年以上", "20天"]],
        "病假": [["连续工作年限", "病假工资比例"], ["不满2年", "60%"], ["8年以上", "100%"]],
    })
    xlsx(root / "directory.xlsx", {"Staff": [["Name", "Department", "Extension"]] +
                                   [[f"Person{i:03d}", f"Dept{i % 7}", str(4000 + i)] for i in range(STAFF)]})
    deck(root / "onboarding.pptx")
    (root / "加班.csv").write_bytes("加班类型,工资倍数\n工作日延长,150%\n休息日,200%\n法定节假日,300%\n".encode("gbk"))
    document = docx.Document()
    document.add_heading("差旅标准", level=1)
    document.add_paragraph("城市住宿标准", style="Caption")
    table = document.add_table(rows=3, cols=2)
    for r, (city, limit) in enumerate([("城市", "住宿上限"), ("北京", "600元"), ("深圳", "550元")]):
        table.cell(r, 0).text, table.cell(r, 1).text = city, limit
    document.save(root / "travel.docx")
    (root / "年假申请.md").write_text("# 年假申请\n\n年假须提前三天在系统中申请，经直属主管批准。\n", encoding="utf-8")
    return root


def add_bad_files(root) -> None:
    bad = root / "bad"
    bad.mkdir()
    plain = io.BytesIO()
    xlsx(plain, {"工资": [["姓名", "月薪"], ["张三", "30000"]]})
    encrypted = io.BytesIO()
    OOXMLFile(io.BytesIO(plain.getvalue())).encrypt("s3cret", encrypted)
    (bad / "salaries.xlsx").write_bytes(encrypted.getvalue())
    (bad / "truncated.xlsx").write_bytes(plain.getvalue()[:1500])
    (bad / "corrupt.pptx").write_bytes(b"PK\x03\x04 this is no presentation")


def ingest(root):
    result = runner.invoke(app, ["ingest", str(root), "--json"])
    return result, json.loads(result.stdout.strip().splitlines()[-1])


def search(query: str) -> list[dict]:
    result = runner.invoke(app, ["search", query, "--mode", "lexical", "--json", "--top-n", "3"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])["results"]


@pytest.mark.slow
def test_every_office_file_read_exits_0_and_rows_are_found_with_their_header(office_kb, isolated_settings):
    result, report = ingest(office_kb)
    assert result.exit_code == 0, result.output
    assert len(report["added"]) == 6 and report["skipped"] == []

    top = search("工龄12年年假几天")[0]
    assert os.path.basename(top["source"]) == "休假标准.xlsx" and top["section"] == "年假标准"
    assert top["text"].startswith("| 工龄 | 年假天数 |") and "| 10-20年 | 15天 |" in top["text"]

    top = search("休息日加班工资倍数")[0]
    assert os.path.basename(top["source"]) == "加班.csv"
    assert top["text"].startswith("| 加班类型 | 工资倍数 |") and "| 休息日 | 200% |" in top["text"]

    top = search("深圳住宿上限")[0]
    assert os.path.basename(top["source"]) == "travel.docx"
    assert top["text"].startswith("Table: 城市住宿标准\n| 城市 | 住宿上限 |") and "| 深圳 | 550元 |" in top["text"]


def test_a_row_deep_in_a_long_sheet_comes_with_the_column_names(office_kb, isolated_settings):
    ingest(office_kb)
    wanted = STAFF - 3
    top = search(f"Person{wanted:03d} extension")[0]
    assert os.path.basename(top["source"]) == "directory.xlsx" and top["section"] == "Staff"
    lines = top["text"].split("\n")
    assert lines[0] == "| Name | Department | Extension |"  # not the sheet's first chunk, still its header
    assert f"| Person{wanted:03d} | Dept{wanted % 7} | {4000 + wanted} |" in lines
    assert "| Person000 |" not in top["text"]


@pytest.mark.slow
def test_speaker_notes_are_found_with_their_slide(office_kb, isolated_settings):
    ingest(office_kb)
    top = search("lost token replaced Zurich")[0]
    assert os.path.basename(top["source"]) == "onboarding.pptx"
    assert top["section"] == "Hardware tokens" and top["page"] == 2
    assert "Speaker notes: Say: a lost token is replaced at the Zurich service desk" in top["text"]


@pytest.mark.slow
def test_bad_office_files_are_skipped_with_reasons_and_the_good_ones_indexed(office_kb, isolated_settings):
    add_bad_files(office_kb)
    result, report = ingest(office_kb)
    assert result.exit_code == 3, result.output
    assert len(report["added"]) == 6 and report["total_documents"] == 6
    reasons = {os.path.basename(s["file"]): s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"salaries.xlsx", "truncated.xlsx", "corrupt.pptx"}
    assert "password-protected XLSX; save an unprotected copy" in reasons["salaries.xlsx"]
    assert "not a valid XLSX" in reasons["truncated.xlsx"] and "re-save" in reasons["truncated.xlsx"]
    assert "not a valid PPTX" in reasons["corrupt.pptx"]
    assert "Traceback" not in result.output
    assert "skipped" in result.output and "salaries.xlsx" in result.output
    assert os.path.basename(search("工龄12年年假几天")[0]["source"]) == "休假标准.xlsx"


@pytest.mark.slow
def test_merged_neighbouring_table_chunks_show_the_header_once(office_kb, isolated_settings):
    ingest(office_kb)

    def top(*flags: str) -> dict:
        result = runner.invoke(app, ["search", "Name Department Extension", "--mode", "lexical", "--json",
                                     "--top-n", "20", *flags])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout.strip().splitlines()[-1])["results"][0]

    def rows(text: str) -> list[str]:
        return [line for line in text.split("\n") if line.startswith("| Person")]

    single, merged = top("--no-merge"), top("--merge")
    assert os.path.basename(merged["source"]) == "directory.xlsx"
    assert len(rows(merged["text"])) > len(rows(single["text"]))  # neighbouring chunks of the sheet were joined
    top = merged
    assert top["text"].startswith("| Name | Department | Extension |\n")
    assert top["text"].count("| Name | Department | Extension |") == 1
