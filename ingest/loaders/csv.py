"""CSV (and TSV): the encoding detected as for text files, the delimiter sniffed (comma, semicolon, tab, pipe),
the first row read as the header; the whole file one table (`ingest.tables`) titled by the file's name. More than
`tables.MAX_CELLS` non-empty cells (200,000) are refused, as for XLSX."""

from __future__ import annotations

import csv
import io
from pathlib import PurePath

from ..tables import MAX_CELLS, table_lines
from .base import Loaded
from .text import decode_text

_DELIMITERS = ",;\t|"


def _dialect(text: str, name: str) -> type[csv.Dialect] | csv.Dialect:
    if name.lower().endswith(".tsv"):
        return csv.excel_tab
    try:
        return csv.Sniffer().sniff(text[:64 * 1024], delimiters=_DELIMITERS)
    except csv.Error:  # a one-column file has no delimiter to find
        return csv.excel


def load_csv(name: str, data: bytes) -> Loaded:
    text, encoding = decode_text(data)
    rows: list[list[str]] = []
    cells = 0
    try:
        for row in csv.reader(io.StringIO(text, newline=""), _dialect(text, name)):
            cells += sum(1 for value in row if value.strip())
            if cells > MAX_CELLS:
                raise ValueError(f"CSV holds more than {MAX_CELLS:,} non-empty cells (reached at row "
                                 f"{len(rows) + 1:,}); split it or keep the part people search")
            rows.append(row)
    except csv.Error as exc:  # a field over csv's 128 KB limit, NUL bytes
        raise ValueError(f"malformed CSV ({exc}); check the quoting or save it again from a spreadsheet") from exc
    return Loaded(title=PurePath(name).stem, text="\n".join(table_lines(rows)), meta={"encoding": encoding})
