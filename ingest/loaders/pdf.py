"""PDF with pypdf: text per page, page numbers kept as character offsets, running headers and footers removed,
tables recovered from the page layout as row lines (`ingest.tables.layout_tables`).

Pages without a usable text layer (scans) are rendered with pypdfium2, one at a time, and read by OCR
(`ingest.ocr`); `meta["ocr"]` says which pages OCR read, with their confidence, and which it could not read.
"""

from __future__ import annotations

import io
from pathlib import PurePath

from pypdf import PageObject, PdfReader
from pypdf.errors import PdfReadError, PyPdfError

from ..clean import clean_text, drop_repeated_lines, join_wrapped_cjk_lines
from ..ocr import OcrOptions, PageResult, ocr_meta, read_page
from ..tables import layout_tables, splice_tables
from .base import Loaded, join_pages
from .image import MAX_PIXELS, unreadable_reason

MAX_PAGES = 5000
# A page with fewer characters than this in its text layer is treated as a scan: scanners often stamp a page
# number or an invisible one-word layer on an image, and that alone would hide the page's text from search.
MIN_TEXT_CHARS = 16


def _page_text(page: PageObject) -> str:
    """The page's text, tables written as row lines when its layout shows columns (`ingest.tables`)."""
    plain = page.extract_text() or ""
    try:
        layout = page.extract_text(extraction_mode="layout") or ""
    except Exception:  # layout is a bonus: a page pypdf cannot lay out keeps its plain text
        return plain
    tables = layout_tables(layout)
    return splice_tables(plain, tables) if tables else plain


def _ocr_pages(data: bytes, numbers: list[int], ocr: OcrOptions) -> list[PageResult]:
    """Render the given 1-based pages one at a time (memory stays at one page) and read each by OCR. Pages with
    no image on them (blank pages, a chapter title) are left alone: there is nothing to read there."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    results = []
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise ValueError(f"PDF pages cannot be rendered for OCR ({exc}); re-export it") from exc
    try:
        for number in numbers:
            page = pdf[number - 1]
            if next(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2), None) is None:
                page.close()
                continue
            width, height = page.get_size()  # points
            # A huge page (a poster, or a hostile MediaBox) is rendered smaller, within the pixel limit of images.
            scale = min(ocr.dpi / 72, (MAX_PIXELS / max(width * height, 1.0)) ** 0.5)
            image = page.render(scale=scale, grayscale=True).to_pil()
            page.close()
            results.append(read_page(number, image, ocr))
            del image
    except pdfium.PdfiumError as exc:
        raise ValueError(f"PDF pages cannot be rendered for OCR ({exc}); re-export it") from exc
    finally:
        pdf.close()
    return results


def load_pdf(name: str, data: bytes, ocr: OcrOptions | None = None) -> Loaded:
    """Text per page; pages with no usable text layer read by OCR unless `ocr.enabled` is False."""
    ocr = ocr if ocr is not None else OcrOptions()
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
    scanned = [n for n, page in enumerate(pages, start=1) if len("".join(page.split())) < MIN_TEXT_CHARS]
    results = _ocr_pages(data, scanned, ocr) if scanned and ocr.enabled else []
    for r in results:
        if r.readable:  # an unreadable page keeps its few characters of text layer: reported, not indexed as noise
            pages[r.page - 1] = clean_text(r.text)
    pages = [join_wrapped_cjk_lines(page) for page in drop_repeated_lines(pages)]
    if not any(page.strip() for page in pages):
        if results:
            raise ValueError(unreadable_reason([r for r in results if not r.readable]))
        raise ValueError("PDF has no extractable text (a scanned image?) and OCR is off; set KB_OCR_ENABLED=true")
    text, offsets = join_pages(pages)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = str(info_title).strip() or (first if len(first) <= 80 else PurePath(name).stem)
    meta = {"pages": n_pages, "page_offsets": offsets}
    if results:
        meta["ocr"] = ocr_meta(ocr.engine, results)
    return Loaded(title=title, text=text, meta=meta)
