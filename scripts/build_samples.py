"""Build the PDF and DOCX files of the sample knowledge base from their text sources.

Sources live in ``scripts/sample_sources/*.md``: a YAML front-matter block, then a small Markdown subset

- ``# ``, ``## ``, ``### `` headings;
- paragraphs (consecutive lines are joined: with nothing for Chinese, with a space for English);
- ``- `` list items;
- ``| a | b |`` table rows (the first row is the header; ``|---|`` separator rows are skipped).

Front-matter keys: ``output`` (path under ``data/samples``, ``.pdf`` or ``.docx``), ``title``, ``lang`` (``zh`` or
``en``), optional ``author``, ``header`` and ``footer`` (PDF running header/footer; ``{page}`` is replaced by the
page number) and ``acl`` (a list of groups: written as a ``<output>.meta.json`` sidecar).

The output is deterministic (fixed timestamps and document ids), so re-running the script on unchanged sources
changes no file:

    python scripts/build_samples.py            # build everything
    python scripts/build_samples.py --check    # exit 1 if a generated file is missing or out of date
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "scripts" / "sample_sources"
SAMPLES = ROOT / "data" / "samples"
FIXED_TIME = datetime(2024, 3, 1, 9, 0, 0)
ZIP_TIME = (2024, 3, 1, 9, 0, 0)

_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_TABLE_SEP = re.compile(r"^\|[\s:|-]+\|$")
_CJK_RUN = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+")


@dataclass
class Block:
    kind: str  # "heading", "para", "item", "table"
    text: str = ""
    level: int = 0
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class Source:
    path: Path
    meta: dict
    blocks: list[Block]

    @property
    def lang(self) -> str:
        return str(self.meta.get("lang", "en"))

    @property
    def output(self) -> Path:
        return SAMPLES / str(self.meta["output"])


def parse_source(path: Path) -> Source:
    raw = path.read_text(encoding="utf-8")
    match = _FRONT.match(raw)
    if not match:
        raise SystemExit(f"{path}: missing YAML front-matter (output, title, lang)")
    meta = yaml.safe_load(match.group(1)) or {}
    for key in ("output", "title", "lang"):
        if key not in meta:
            raise SystemExit(f"{path}: front-matter lacks '{key}'")
    joiner = "" if meta["lang"] == "zh" else " "
    blocks: list[Block] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(Block("para", joiner.join(para)))
            para.clear()

    for line in raw[match.end():].splitlines():
        line = line.strip()
        if not line:
            flush()
            continue
        heading = re.match(r"^(#{1,3})\s+(.+)$", line)
        if heading:
            flush()
            blocks.append(Block("heading", heading.group(2).strip(), level=len(heading.group(1))))
        elif line.startswith("- "):
            flush()
            blocks.append(Block("item", line[2:].strip()))
        elif line.startswith("|"):
            flush()
            if _TABLE_SEP.match(line):
                continue
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if blocks and blocks[-1].kind == "table":
                blocks[-1].rows.append(cells)
            else:
                blocks.append(Block("table", rows=[cells]))
        else:
            para.append(line)
    flush()
    return Source(path=path, meta=meta, blocks=blocks)


# ---------------------------------------------------------------------------------------------------------- PDF


def build_pdf(src: Source) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    zh = src.lang == "zh"
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))  # also for Chinese names quoted in English text
    body_font = "STSong-Light" if zh else "Helvetica"
    bold_font = "STSong-Light" if zh else "Helvetica-Bold"
    wrap = "CJK" if zh else None
    body = ParagraphStyle("body", fontName=body_font, fontSize=10.5, leading=16, spaceAfter=6, wordWrap=wrap)
    item = ParagraphStyle("item", parent=body, leftIndent=12, spaceAfter=3)
    cell = ParagraphStyle("cell", parent=body, fontSize=9.5, leading=13, spaceAfter=0)
    heads = {
        1: ParagraphStyle("h1", fontName=bold_font, fontSize=17, leading=24, spaceAfter=10, wordWrap=wrap),
        2: ParagraphStyle("h2", fontName=bold_font, fontSize=13.5, leading=20, spaceBefore=8, spaceAfter=6,
                          wordWrap=wrap),
        3: ParagraphStyle("h3", fontName=bold_font, fontSize=11.5, leading=17, spaceBefore=4, spaceAfter=4,
                          wordWrap=wrap),
    }
    header = src.meta.get("header")
    footer = src.meta.get("footer")

    def decorate(canvas, doc) -> None:
        if not (header or footer):
            return
        canvas.saveState()
        canvas.setFont(body_font, 8.5)
        canvas.setFillColor(colors.grey)
        if header:
            canvas.drawString(20 * mm, A4[1] - 12 * mm, str(header))
        if footer:
            canvas.drawRightString(A4[0] - 20 * mm, 10 * mm, str(footer).format(page=doc.page))
        canvas.restoreState()

    def markup(text: str) -> str:
        text = escape(text)
        if zh:
            return text
        # Helvetica has no CJK glyphs: set Chinese runs inside English text in the CID font.
        return _CJK_RUN.sub(lambda m: f'<font name="STSong-Light">{m.group(0)}</font>', text)

    story = []
    for block in src.blocks:
        if block.kind == "heading":
            story.append(Paragraph(markup(block.text), heads[block.level]))
        elif block.kind == "para":
            story.append(Paragraph(markup(block.text), body))
        elif block.kind == "item":
            story.append(Paragraph("• " + markup(block.text), item))
        elif block.kind == "table":
            data = [[Paragraph(markup(c), cell) for c in row] for row in block.rows]
            table = Table(data, repeatRows=1, hAlign="LEFT")
            table.setStyle(TableStyle([
                ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef6")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]))
            story += [table, Spacer(1, 8)]
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=A4, title=str(src.meta["title"]), author=str(src.meta.get("author", "Northwind Lattice")),
        subject="Northwind Lattice sample knowledge base", creator="scripts/build_samples.py",
        leftMargin=20 * mm, rightMargin=20 * mm, topMargin=20 * mm, bottomMargin=18 * mm, invariant=1,
    )
    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------------- DOCX


def _fixed_zip(data: bytes) -> bytes:
    """Rewrite a zip with fixed timestamps so that the same document gives the same bytes on every run."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def build_docx(src: Source) -> bytes:
    import docx
    from docx.oxml.ns import qn
    from docx.shared import Pt

    document = docx.Document()
    normal = document.styles["Normal"]
    normal.font.size = Pt(10.5)
    if src.lang == "zh":
        normal.font.name = "Calibri"
        normal.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), "宋体")
    props = document.core_properties
    props.title = str(src.meta["title"])
    props.author = str(src.meta.get("author", "Northwind Lattice"))
    props.last_modified_by = props.author
    props.created = FIXED_TIME
    props.modified = FIXED_TIME
    props.revision = 1
    for block in src.blocks:
        if block.kind == "heading":
            document.add_heading(block.text, level=block.level)
        elif block.kind == "para":
            document.add_paragraph(block.text)
        elif block.kind == "item":
            document.add_paragraph(block.text, style="List Bullet")
        elif block.kind == "table":
            ncols = max(len(row) for row in block.rows)
            table = document.add_table(rows=0, cols=ncols)
            table.style = "Table Grid"
            for r, row in enumerate(block.rows):
                cells = table.add_row().cells
                for c, value in enumerate(row):
                    cells[c].text = value
                    if r == 0:
                        for run in cells[c].paragraphs[0].runs:
                            run.bold = True
    buffer = io.BytesIO()
    document.save(buffer)
    return _fixed_zip(buffer.getvalue())


# ---------------------------------------------------------------------------------------------------------- main

BUILDERS = {".pdf": build_pdf, ".docx": build_docx}


def outputs(src: Source) -> dict[Path, bytes]:
    suffix = src.output.suffix.lower()
    if suffix not in BUILDERS:
        raise SystemExit(f"{src.path}: output must be .pdf or .docx, got {src.output.name}")
    files = {src.output: BUILDERS[suffix](src)}
    sidecar = src.output.with_name(src.output.name + ".meta.json")
    if src.meta.get("acl"):
        files[sidecar] = (json.dumps({"acl": list(src.meta["acl"])}, ensure_ascii=False) + "\n").encode("utf-8")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report out-of-date files instead of writing them")
    args = parser.parse_args(argv)
    sources = sorted(SOURCES.glob("*.md"))
    if not sources:
        print(f"no sources in {SOURCES}", file=sys.stderr)
        return 1
    stale = []
    for path in sources:
        for out, data in outputs(parse_source(path)).items():
            current = out.read_bytes() if out.is_file() else None
            if current == data:
                continue
            stale.append(out)
            if not args.check:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
    verb = "out of date" if args.check else "written"
    for out in stale:
        print(f"{verb}: {out.relative_to(ROOT)}")
    print(f"{len(sources)} sources, {len(stale)} file(s) {verb}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
