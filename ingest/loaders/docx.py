"""DOCX with python-docx: headings as `#` lines, list paragraphs as `- ` lines, tables as `| a | b |` rows, in
document order. Damaged, encrypted and zip-bomb archives are refused before parsing (`ooxml.check_package`)."""

from __future__ import annotations

import io
from pathlib import PurePath

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from ..tables import table_lines
from .base import Loaded
from .ooxml import check_package


def _heading_level(paragraph: Paragraph) -> int:
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if style == "Title":
        return 1
    if style.startswith("Heading"):
        digits = style.removeprefix("Heading").strip()
        return int(digits) if digits.isdigit() else 1
    return 0


def load_docx(name: str, data: bytes) -> Loaded:
    check_package(data, "DOCX", "word/document.xml")
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, XMLSyntaxError, ValueError… on damaged archives
        raise ValueError(f"damaged DOCX ({exc.__class__.__name__}); re-save it from Word or LibreOffice") from exc
    lines: list[str] = []
    first_heading = ""
    caption = ""  # a Caption-style paragraph right above a table names that table
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            lines += ["", *table_lines(([cell.text for cell in row.cells] for row in block.rows), caption), ""]
            caption = ""
            continue
        text = block.text.strip()
        if caption:
            lines += [caption, ""]
            caption = ""
        if not text:
            continue
        level = _heading_level(block)
        style = (block.style.name if block.style is not None else "") or ""
        if style == "Caption":
            caption = text
        elif level:
            first_heading = first_heading or text
            lines += ["", f"{'#' * min(level, 6)} {text}", ""]
        elif style.startswith("List"):
            lines.append(f"- {text}")
        else:
            lines += [text, ""]
    if caption:
        lines.append(caption)
    title = (document.core_properties.title or "").strip() or first_heading or PurePath(name).stem
    return Loaded(title=title, text="\n".join(lines))
