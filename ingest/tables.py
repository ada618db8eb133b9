"""Tables as text, the one representation loaders write and the chunker reads.

A table is a run of consecutive row lines ``| cell | cell |``, its header row first, optionally preceded by one
caption line ``Table: caption``. A Markdown separator line (``| --- | --- |``) after the header is allowed and belongs
to the header. Loaders build the lines with `table_lines`; the chunker finds them again with `find_tables` and
repeats the table's *head* (caption and header row) at the top of every chunk of the table, so a row is always read
together with its column names ("工龄 | 年假天数" above "10年以上不满20年 | 15天").

Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CAPTION_PREFIX = "Table: "
# Non-empty cells one spreadsheet file (XLSX, CSV) may hold: 40,000 rows of 5 columns. Reading that many takes
# openpyxl about 5 s and gives some 1,500-3,200 chunks to embed (docs/INGEST.md); bigger sheets are data exports
# rather than documents people ask questions of, and one of them would dominate an ingest of a thousand policies.
MAX_CELLS = 200_000
_ROW = re.compile(r"^\|.*\|$")
_SEPARATOR = re.compile(r"^\|(?:\s*:?-{3,}:?\s*\|)+$")
_SPACE = re.compile(r"\s+")


def cell_text(value: object) -> str:
    """One cell as it goes into a row line: None → "", whitespace and line breaks collapsed (a row is one line),
    and ``|`` escaped as ``\\|`` so the cell cannot be read as two."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else _format_value(value)
    return _SPACE.sub(" ", text).strip().replace("|", "\\|")


def _format_value(value: object) -> str:
    # Spreadsheets hand over 15.0 for an integer cell and datetimes for dates: write what a person typed.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        text = value.isoformat()
        return text.removesuffix("T00:00:00")
    return str(value)


def row_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_lines(rows: Iterable[Sequence[object]], caption: str = "") -> list[str]:
    """A table as row lines, the first row being the header; `caption` (if any) as a ``Table:`` line above.

    Rows whose cells are all empty and columns that are empty in every row are dropped (a spreadsheet's formatting
    reaches far beyond its data). A first row holding one text only (a title typed above the header, or a title
    cell merged across the columns) above two rows or more of a wider table is the table's title: it becomes the
    caption (after `caption`, if one was given) and the next row is the header. Returns [] when no cell holds text.
    """
    cleaned = [[cell_text(cell) for cell in row] for row in rows]
    cleaned = [row for row in cleaned if any(row)]
    if not cleaned:
        return []
    titles = {cell for cell in cleaned[0] if cell}
    if len(cleaned) >= 3 and len(titles) == 1 and max(sum(map(bool, row)) for row in cleaned[1:]) >= 2:
        caption = " ".join(part for part in (caption, titles.pop()) if part)
        cleaned = cleaned[1:]
    width = max(map(len, cleaned))
    cleaned = [row + [""] * (width - len(row)) for row in cleaned]
    keep = [i for i in range(width) if any(row[i] for row in cleaned)]
    lines = [row_line([row[i] for i in keep]) for row in cleaned]
    caption = _SPACE.sub(" ", caption).strip()
    return ([CAPTION_PREFIX + caption] if caption else []) + lines


@dataclass(frozen=True)
class TableSpan:
    """Where a table sits in a document's text (character offsets, end exclusive).

    `start` is where the table begins (its caption line, else its header row); `rows` are the spans of the data
    rows, in order; `head` is the caption line and the header row, the text repeated above every chunk of the table.
    """

    start: int
    end: int
    head: str
    rows: tuple[tuple[int, int], ...]


def is_row(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= 2 and bool(_ROW.match(stripped))


def find_tables(text: str) -> list[TableSpan]:
    """Every table in `text` that has a header row and at least one data row, in order.

    A single row line is not a table (nothing to repeat) and is left to the chunker as ordinary text.
    """
    tables: list[TableSpan] = []
    lines: list[tuple[int, str]] = []
    pos = 0
    for raw in text.split("\n"):
        lines.append((pos, raw))
        pos += len(raw) + 1
    i = 0
    while i < len(lines):
        if not is_row(lines[i][1]):
            i += 1
            continue
        j = i
        while j < len(lines) and is_row(lines[j][1]):
            j += 1
        table = _table_at(lines, i, j)
        if table is not None:
            tables.append(table)
        i = j
    return tables


def _table_at(lines: list[tuple[int, str]], first: int, stop: int) -> TableSpan | None:
    header = lines[first][1].strip()
    body = first + 1
    while body < stop and _SEPARATOR.match(lines[body][1].strip()):
        body += 1
    if body >= stop:
        return None
    start = lines[first][0]
    head = header
    if first > 0 and lines[first - 1][1].strip().startswith(CAPTION_PREFIX):
        start = lines[first - 1][0]
        head = lines[first - 1][1].strip() + "\n" + header
    rows = tuple((pos, pos + len(raw)) for pos, raw in lines[body:stop])
    return TableSpan(start=start, end=rows[-1][1], head=head, rows=rows)


# --- PDF: tables recovered from pypdf's layout text -----------------------------------------------------------------
# A PDF has no tables, only text placed on a page. pypdf's plain extraction loses the columns (often one cell per
# line); its layout extraction (`extraction_mode="layout"`) keeps them as runs of spaces. A table is read from the
# layout text and written back over the same characters of the plain text, which keeps everything else as it was.

_FIELD = re.compile(r"\S+(?: \S+)*")  # text separated by two spaces or more
_PDF_CAPTION = re.compile(r"^(?:表|Table)\s*[0-9一二三四五六七八九十]+(?:[-.][0-9]+)?(?:[\s.:：、]|$)")
MIN_PDF_ROWS = 3  # a header and two data rows: fewer is too little evidence of a table in running text
MAX_HEADER_CELL = 30  # column names are short; longer "cells" are two columns of prose
MAX_COLUMN_SHIFT = 3  # characters a cell may start away from its column in layout text


def _fields(line: str) -> list[tuple[int, str]]:
    return [(m.start(), m.group()) for m in _FIELD.finditer(line)]


def _aligned(fields: list[tuple[int, str]], columns: list[int]) -> list[str] | None:
    """The row's cells by column, or None when a field starts at no column (the table has ended)."""
    cells = [""] * len(columns)
    for start, text in fields:
        nearest = min(range(len(columns)), key=lambda i: abs(columns[i] - start))
        if abs(columns[nearest] - start) > MAX_COLUMN_SHIFT or cells[nearest]:
            return None
        cells[nearest] = text
    return cells


def layout_tables(layout: str) -> list[list[list[str]]]:
    """Tables in one page of layout text: runs of at least MIN_PDF_ROWS lines whose cells start where the first
    line's cells start (the header, two or more short cells). Each table is its rows of cells, header first."""
    lines = [line for line in layout.split("\n") if line.strip()]
    tables: list[list[list[str]]] = []
    i = 0
    while i < len(lines):
        header = _fields(lines[i])
        if len(header) < 2 or any(len(text) > MAX_HEADER_CELL for _, text in header):
            i += 1
            continue
        columns = [start for start, _ in header]
        rows = [[text for _, text in header]]
        j = i + 1
        while j < len(lines):
            fields = _fields(lines[j])
            cells = _aligned(fields, columns) if len(fields) >= 2 or (fields and fields[0][0] > columns[0]) else None
            if cells is None:
                break
            rows.append(cells)
            j += 1
        if len(rows) >= MIN_PDF_ROWS:
            tables.append(rows)
            i = j
        else:
            i += 1
    return tables


def splice_tables(plain: str, tables: list[list[list[str]]]) -> str:
    """`plain` with each table's lines replaced by its row lines (`table_lines`).

    A table replaces the run of plain lines that holds exactly its cells' characters (whitespace aside); a line
    just above it that reads like a caption ("表1 …", "Table 2 …") becomes its ``Table:`` line. A table whose
    characters are not found as whole lines is left alone: the plain text is never lost.
    """
    lines = plain.split("\n")
    for table in tables:
        target = "".join("".join(cell.split()) for row in table for cell in row)
        span = _find_run(lines, target)
        if span is None:
            continue
        first, stop = span
        caption = ""
        if first > 0 and _PDF_CAPTION.match(lines[first - 1].strip()):
            first -= 1
            caption = lines[first].strip()
        lines[first:stop] = ["", *table_lines(table, caption), ""]
    return "\n".join(lines)


def _find_run(lines: list[str], target: str) -> tuple[int, int] | None:
    squashed = ["".join(line.split()) for line in lines]
    for first, head in enumerate(squashed):
        if not head or not target.startswith(head):
            continue
        got, stop = head, first + 1
        while len(got) < len(target) and stop < len(lines) and target.startswith(got + squashed[stop]):
            got += squashed[stop]
            stop += 1
        if got == target:
            return first, stop
    return None
