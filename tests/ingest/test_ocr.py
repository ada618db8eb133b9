"""Scans and photos are read by OCR: real page images drawn with a CJK font, real image-only PDFs, the real OCR
engines, the real `kb ingest` and `kb search`.

Skipped (saying why) only where the OCR engine or the CJK font is not installed; `.ci/run` installs both.
"""

from __future__ import annotations

import io
import json
import os

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter
from typer.testing import CliRunner

from app.cli import app
from app.settings import get_settings
from ingest import IngestError, OcrOptions, load
from ingest.ocr import OcrUnavailable, engine_for
from tests.ingest.scans import NOTO_CJK, image_only_pdf, png_bytes, render_page

runner = CliRunner()

if not NOTO_CJK.is_file():
    pytest.skip(f"no CJK font at {NOTO_CJK}: apt-get install fonts-noto-cjk", allow_module_level=True)

# Page 1 is a full page (two long articles, each near MiniLM's 256-token chunk budget), so the article on page 2
# cannot share a chunk with page 1 and its chunk starts on page 2.
TRAVEL_P1 = (
    "差旅费管理办法\n第一条 为规范公司差旅费报销，合理控制费用支出，根据国家有关财务制度，结合公司实际情况，制定本办法。"
    "本办法适用于公司全体正式员工、试用期员工及劳务派遣人员因公出差期间发生的城市间交通费、住宿费、伙食补助费和市内交通费。"
    "出差人员应当事先填写出差审批单，写明出差事由、地点、天数和预计费用，经部门负责人批准后方可出差。"
    "未经批准擅自出差的，其费用一律不予报销，由此造成的损失由本人承担。\n"
    "第二条 出差人员应当厉行节约，合理安排行程，不得借出差之机游山玩水，不得绕道或者延长出差时间。"
    "因工作需要必须延长出差时间的，应当及时向部门负责人报告并取得书面同意，否则延长期间的费用由本人承担。"
    "出差期间发生的费用应当取得合法有效的票据，票据上的日期、地点应当与出差审批单一致。"
    "财务部门对不符合规定的票据有权拒绝报销，并要求出差人员说明情况。")
TRAVEL_P2 = "第三条 住宿标准：员工出差住宿，一线城市每晚不超过六百元，其他城市每晚不超过四百元。"
SECURITY = ("Laptop security\nLaptops must use full-disk encryption and lock the screen after five minutes. "
            "Report a stolen laptop to the security desk within one hour.")


def engine_or_skip(name: str) -> None:
    try:
        engine_for(name, ("chi_sim", "eng"))
    except OcrUnavailable as exc:
        pytest.skip(f"OCR engine {name} is not installed: {exc}")


@pytest.fixture(scope="module")
def pages():
    """The page images, drawn once: travel policy pages 1 and 2 (Chinese), the security notice (English)."""
    return {"travel1": render_page(TRAVEL_P1), "travel2": render_page(TRAVEL_P2), "security": render_page(SECURITY)}


def encrypted(pdf: bytes) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password="s3cret", owner_password="owner")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def set_env(monkeypatch, name: str, value: str) -> None:
    """A `KB_*` setting for the next `kb` command (settings are read once per process, so the cache is cleared)."""
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def kb(*args: str):
    result = runner.invoke(app, [*args, "--json"])
    return result, json.loads(result.stdout.strip().splitlines()[-1])


def top_result(query: str) -> dict:
    result, found = kb("search", query, "--mode", "lexical", "--top-n", "1")
    assert result.exit_code == 0, result.output
    assert found["results"], f"nothing found for {query!r}"
    return found["results"][0]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["rapidocr", "tesseract"])
def test_scanned_pdf_text_keeps_its_pages_and_confidence(tmp_path, pages, engine):
    engine_or_skip(engine)
    path = tmp_path / "travel.pdf"
    path.write_bytes(image_only_pdf([pages["travel1"], pages["travel2"]]))
    doc = load(path, ocr=OcrOptions(engine=engine))
    second = doc.text[doc.meta["page_offsets"][1]:]
    assert "每晚不超过六百元" in second.replace(" ", "") and "六百元" not in doc.text[:doc.meta["page_offsets"][1]]
    assert doc.meta["ocr"]["engine"] == engine and doc.meta["ocr"]["unreadable"] == []
    assert [p["page"] for p in doc.meta["ocr"]["pages"]] == [1, 2]
    assert all(0.6 <= p["confidence"] <= 1.0 for p in doc.meta["ocr"]["pages"])


@pytest.mark.slow
def test_kb_ingest_indexes_scans_and_kb_search_finds_the_fact_on_its_page(tmp_path, pages, isolated_settings):
    engine_or_skip("rapidocr")
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "travel-scan.pdf").write_bytes(image_only_pdf([pages["travel1"], pages["travel2"]]))
    (folder / "security-photo.png").write_bytes(png_bytes(pages["security"]))
    pages["security"].convert("RGB").save(folder / "security-copy.jpg", quality=90)
    (folder / "vpn.md").write_text("# VPN\n\nReset your VPN token in the self-service portal.\n")

    result, report = kb("ingest", str(folder))
    assert result.exit_code == 0, result.output  # every file read
    assert len(report["added"]) == 4 and report["skipped"] == [] and report["pages_not_read"] == []

    hit = top_result("每晚不超过六百元")
    assert hit["source"].endswith("travel-scan.pdf") and hit["page"] == 2 and "六百元" in hit["text"]
    hit = top_result("stolen laptop security desk")
    assert hit["source"].endswith(("security-photo.png", "security-copy.jpg")) and hit["page"] == 1
    assert "within one hour" in hit["text"]


@pytest.mark.slow
def test_bad_scans_are_skipped_with_named_reasons_and_good_files_indexed(tmp_path, pages, isolated_settings):
    engine_or_skip("rapidocr")
    folder = tmp_path / "kb"
    folder.mkdir()
    good = png_bytes(pages["security"])
    (folder / "security.png").write_bytes(good)
    (folder / "locked-scan.pdf").write_bytes(encrypted(image_only_pdf([pages["travel2"]])))
    Image.new("1", (10_000, 10_000)).save(folder / "bomb.png")  # 100 megapixels in a small file
    (folder / "cut.png").write_bytes(good[: len(good) // 2])
    (folder / "noise.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(3000))
    (folder / "blank-scan.pdf").write_bytes(image_only_pdf([Image.new("L", (1654, 2339), 255)]))
    # one good page and one blank page: the file is indexed, the blank page reported by number
    (folder / "half-blank.pdf").write_bytes(image_only_pdf([pages["travel2"], Image.new("L", (1654, 2339), 255)]))

    result, report = kb("ingest", str(folder))
    assert result.exit_code == 3, result.output  # documented: some files skipped
    reasons = {os.path.basename(s["file"]): s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"locked-scan.pdf", "bomb.png", "cut.png", "noise.jpg", "blank-scan.pdf"}
    assert "password" in reasons["locked-scan.pdf"]
    assert "decompression bomb" in reasons["bomb.png"] and "megapixel" in reasons["bomb.png"]
    assert "truncated" in reasons["cut.png"]
    assert "image" in reasons["noise.jpg"] and "re-export" in reasons["noise.jpg"]
    assert reasons["blank-scan.pdf"].startswith("no page could be read by OCR: page 1: OCR found no text")
    assert sorted(os.path.basename(p) for p in report["added"]) == ["half-blank.pdf", "security.png"]
    assert [(os.path.basename(p["file"]), p["page"]) for p in report["pages_not_read"]] == [("half-blank.pdf", 2)]
    assert "Traceback" not in result.output

    assert top_result("stolen laptop security desk")["source"].endswith("security.png")
    hit = top_result("每晚不超过六百元")
    assert hit["source"].endswith("half-blank.pdf") and hit["page"] == 1


def test_a_page_over_its_time_limit_is_skipped_and_other_files_kept(tmp_path, pages, isolated_settings,
                                                                    monkeypatch):
    engine_or_skip("rapidocr")
    set_env(monkeypatch, "KB_OCR_TIMEOUT_S", "0.001")  # no page can be read in a millisecond
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "travel-scan.pdf").write_bytes(image_only_pdf([pages["travel2"]]))
    (folder / "vpn.md").write_text("# VPN\n\nReset your VPN token in the self-service portal.\n")
    result, report = kb("ingest", str(folder))
    assert result.exit_code == 3, result.output
    [(file, reason)] = [(s["file"], s["reason"]) for s in report["skipped"]]
    assert file.endswith("travel-scan.pdf") and "0.001 s limit" in reason and "KB_OCR_TIMEOUT_S" in reason
    assert [os.path.basename(p) for p in report["added"]] == ["vpn.md"]


def test_low_confidence_pages_are_reported_not_indexed(tmp_path, pages):
    engine_or_skip("rapidocr")
    path = tmp_path / "travel.png"
    path.write_bytes(png_bytes(pages["travel2"]))
    with pytest.raises(IngestError) as info:
        load(path, ocr=OcrOptions(min_confidence=1.0))  # no real page is read with certainty
    assert info.value.path.endswith("travel.png")
    assert "page 1: OCR confidence" in info.value.reason and "under 1.00" in info.value.reason


def test_ocr_off_refuses_images_and_scans_with_the_setting_to_change(tmp_path, pages, isolated_settings,
                                                                     monkeypatch):
    set_env(monkeypatch, "KB_OCR_ENABLED", "false")
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "photo.png").write_bytes(png_bytes(pages["security"]))
    (folder / "scan.pdf").write_bytes(image_only_pdf([pages["travel2"]]))
    result, report = kb("ingest", str(folder))
    assert result.exit_code == 3, result.output
    reasons = {os.path.basename(s["file"]): s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"photo.png", "scan.pdf"}
    assert all("KB_OCR_ENABLED=true" in r for r in reasons.values())


@pytest.mark.slow
def test_multi_page_tiff_pages_are_numbered(tmp_path, pages):
    engine_or_skip("rapidocr")
    path = tmp_path / "travel.tiff"
    # copies: Pillow keeps a PNG save's encoder settings on an image and would hand them to the TIFF encoder
    first, second = pages["travel1"].copy(), pages["travel2"].copy()
    first.save(path, save_all=True, append_images=[second], compression="tiff_lzw")
    doc = load(path)
    assert doc.meta["pages"] == 2 and len(doc.meta["page_offsets"]) == 2
    assert "六百元" in doc.text[doc.meta["page_offsets"][1]:]


@pytest.mark.slow
def test_kb_bench_ingest_reports_ocr_pages_per_second(tmp_path, pages, isolated_settings):
    engine_or_skip("rapidocr")
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "travel-scan.pdf").write_bytes(image_only_pdf([pages["travel1"], pages["travel2"]]))
    (folder / "vpn.md").write_text("# VPN\n\nReset your VPN token in the self-service portal.\n")
    result, report = kb("bench", "ingest", str(folder))
    assert result.exit_code == 0, result.output
    figures = report["corpora"][str(folder)]
    assert figures["documents"] == 2 and figures["ocr_pages"] == 2 and figures["ocr_pages_per_s"] > 0
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "vpn.md").write_text("# VPN\n\nReset your VPN token in the self-service portal.\n")
    _, report = kb("bench", "ingest", str(plain))
    assert report["corpora"][str(plain)]["ocr_pages"] == 0 and report["corpora"][str(plain)]["ocr_pages_per_s"] is None


def test_a_pdf_mixing_text_pages_and_a_scanned_page_reads_only_the_scan_by_ocr(tmp_path, pages):
    engine_or_skip("rapidocr")
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    path = tmp_path / "handbook.pdf"
    pdf = canvas.Canvas(str(path), pagesize=A4)
    pdf.drawString(72, 750, "Employee handbook: the text layer of this page is read directly.")
    pdf.showPage()
    pdf.drawImage(ImageReader(pages["travel2"]), 0, 0, width=A4[0], height=A4[1])  # a page scanned in later
    pdf.showPage()
    pdf.drawString(72, 750, "Page three.")  # a short text page without images: nothing to OCR, kept as it is
    pdf.showPage()
    pdf.save()
    doc = load(path)
    offsets = doc.meta["page_offsets"]
    assert doc.text[: offsets[1]].startswith("Employee handbook: the text layer")
    assert "每晚不超过六百元" in doc.text[offsets[1]: offsets[2]] and doc.text[offsets[2]:] == "Page three."
    assert [p["page"] for p in doc.meta["ocr"]["pages"]] == [2] and doc.meta["ocr"]["unreadable"] == []
