"""DOCX with python-docx: headings as `#` lines, list paragraphs as `- ` lines, tables as `| a | b |` rows, in
document order. Archives that would unpack to an absurd size (zip bombs) are refused before parsing."""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePath

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from .base import Loaded

MAX_UNPACKED_BYTES = 256 * 1024 * 1024
# Apache POI's zip-bomb rule: a part over 100 KB may not expand more than 100 times. Word's XML compresses about
# 5-20 times; a 340 KB file holding 100 MB of repeated paragraphs (300 times) would keep python-docx busy for many
# minutes and gigabytes while staying under MAX_UNPACKED_BYTES.
MAX_RATIO = 100
RATIO_GRACE_BYTES = 100 * 1024


def _check_zip(data: bytes) -> None:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ValueError("not a valid DOCX (not a zip archive); re-save it from Word or LibreOffice as .docx")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > MAX_UNPACKED_BYTES:
            raise ValueError(f"DOCX unpacks to {unpacked / 2**20:.0f} MB, over the "
                             f"{MAX_UNPACKED_BYTES // 2**20} MB limit (a zip bomb?)")
        for info in archive.infolist():
            if info.file_size > RATIO_GRACE_BYTES and info.file_size > MAX_RATIO * max(1, info.compress_size):
                raise ValueError(f"DOCX part {info.filename} expands {info.file_size // max(1, info.compress_size)} "
                                 f"times ({info.compress_size} bytes to {info.file_size / 2**20:.0f} MB), over the "
                                 f"{MAX_RATIO}x limit (a zip bomb?); re-save it from Word or LibreOffice")
        if "word/document.xml" not in archive.namelist():
            raise ValueError("zip archive without word/document.xml: not a DOCX")


def _heading_level(paragraph: Paragraph) -> int:
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if style == "Title":
        return 1
    if style.startswith("Heading"):
        digits = style.removeprefix("Heading").strip()
        return int(digits) if digits.isdigit() else 1
    return 0


def load_docx(name: str, data: bytes) -> Loaded:
    _check_zip(data)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, XMLSyntaxError, ValueError… on damaged archives
        raise ValueError(f"damaged DOCX ({exc.__class__.__name__}); re-save it from Word or LibreOffice") from exc
    lines: list[str] = []
    first_heading = ""
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells = [cell.text.strip().replace("\n", " ") for cell in row.cells]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
            continue
        text = block.text.strip()
        if not text:
            continue
        level = _heading_level(block)
        style = (block.style.name if block.style is not None else "") or ""
        if level:
            first_heading = first_heading or text
            lines += ["", f"{'#' * min(level, 6)} {text}", ""]
        elif style.startswith("List"):
            lines.append(f"- {text}")
        else:
            lines += [text, ""]
    title = (document.core_properties.title or "").strip() or first_heading or PurePath(name).stem
    return Loaded(title=title, text="\n".join(lines))
