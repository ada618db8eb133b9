"""XLSX with openpyxl in read-only (streaming) mode: each worksheet a `# sheet name` section holding one table
(`ingest.tables`: its first non-empty row is the header), cells as last saved by Excel: a formula reads as its
cached value, and a formula never calculated (a file written by a script, never opened in Excel) reads empty.
Empty rows and columns are skipped; chart sheets hold no cells and are left out.

Refused with a reason: password-protected or legacy .xls files, damaged archives and zip bombs
(`ooxml.check_package`), and workbooks of more than `tables.MAX_CELLS` non-empty cells (200,000).
"""

from __future__ import annotations

import io
from pathlib import PurePath

import openpyxl

from ..tables import MAX_CELLS, table_lines
from .base import Loaded
from .ooxml import check_package


def load_xlsx(name: str, data: bytes) -> Loaded:
    check_package(data, "XLSX", "xl/workbook.xml")
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises KeyError, XML and zip errors on damaged parts
        raise ValueError(f"damaged XLSX ({exc.__class__.__name__}: {exc}); re-save it from Excel or "
                         "LibreOffice") from exc
    lines: list[str] = []
    cells = 0
    try:
        for sheet in workbook.worksheets:
            sheet.reset_dimensions()  # the stored dimensions may be wrong; read every row the sheet holds
            rows = []
            for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
                cells += sum(value is not None and value != "" for value in row)
                if cells > MAX_CELLS:
                    raise ValueError(f"workbook holds more than {MAX_CELLS:,} non-empty cells (reached at row "
                                     f"{number:,} of sheet '{sheet.title}'); split it or export the part people "
                                     "search as a smaller file")
                rows.append(row)
            table = table_lines(rows)
            if table:
                lines += ["", f"# {sheet.title}", "", *table]
        title = (workbook.properties.title or "").strip() or PurePath(name).stem
    except ValueError:
        raise
    except Exception as exc:  # a damaged sheet part surfaces only while streaming it
        raise ValueError(f"damaged XLSX ({exc.__class__.__name__}: {exc}); re-save it from Excel or "
                         "LibreOffice") from exc
    finally:
        workbook.close()
    return Loaded(title=title, text="\n".join(lines), meta={"sheets": len(workbook.sheetnames)})
