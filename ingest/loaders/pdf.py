"""PDF with pypdf: text per page, page numbers kept as character offsets, running headers and footers removed,
tables recovered from the page layout as row lines (`ingest.tables.layout_tables`)."""

from __future__ import annotations

import io
from pathlib import PurePath

from pypdf import PageObject, PdfReader
from pypdf.errors import PdfReadError, PyPdfError

from ..clean import clean_text, drop_repeated_lines, join_wrapped_cjk_lines
from ..tables import layout_tables, splice_tables
from .base import Loaded

MAX_PAGES = 5000


def _page_text(page: PageObject) -> str:
    """The page's text, tables written as row lines when its layout shows columns (`ingest.tables`)."""
    plain = page.extract_text() or ""
    try:
        layout = page.extract_text(extraction_mode="layout") or ""
    except Exception:  # layout is a bonus: a page pypdf cannot lay out keeps its plain text
        return plain
    tables = layout_tables(layout)
    return splice_tables(plain, tables) if tables else plain


def load_pdf(name: str, data: bytes) -> Loaded:
    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise ValueError("not a PDF (no %PDF header); check the file or give it its real suffix")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many "protected" PDFs only restrict printing and open with an empty password.
            if not reader.decrypt(""):
                raise ValueError("encrypted PDF; remove the password (e.g. `qpdf --decrypt`) and ingest again")
        n_pages = len(reader.pages)
        if n_pages > MAX_PAGES:
            raise ValueError(f"PDF has {n_pages} pages, over the {MAX_PAGES}-page limit; split it")
        # pypdf reads a bullet glyph of the standard fonts as DEL (0x7f); keep it as a bullet, not a control byte.
        pages = [clean_text(_page_text(page).replace("\x7f", "•")) for page in reader.pages]
        info_title = (reader.metadata.title if reader.metadata else None) or ""
    except ValueError:
        raise
    except (PdfReadError, PyPdfError, OSError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"broken or truncated PDF ({exc.__class__.__name__}: {exc}); re-export it") from exc
    except Exception as exc:  # pypdf raises many internal types on hostile files; never let one stop an ingest.
        raise ValueError(f"unreadable PDF ({exc.__class__.__name__}: {exc}); re-export it") from exc
    pages = [join_wrapped_cjk_lines(page) for page in drop_repeated_lines(pages)]
    if not any(page.strip() for page in pages):
        raise ValueError("PDF has no extractable text (a scanned image?); run OCR on it first")
    offsets, parts, pos = [], [], 0
    for page in pages:
        offsets.append(pos)
        parts.append(page)
        pos += len(page) + 2  # the "\n\n" that joins pages
    text = "\n\n".join(parts)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = str(info_title).strip() or (first if len(first) <= 80 else PurePath(name).stem)
    return Loaded(title=title, text=text, meta={"pages": n_pages, "page_offsets": offsets})
