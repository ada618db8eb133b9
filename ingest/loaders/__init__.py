"""Format loaders. Each takes the file's name and bytes and returns a `Loaded` (title, text, extra meta).

A loader raises `ValueError` with a reason a person can act on; `ingest.load` turns it into an `IngestError` that
names the file. Loaders of formats that may need OCR (`OCR_LOADERS`: PDF and images) also take the `OcrOptions`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ocr import OcrOptions
from .base import Loaded
from .csv import load_csv
from .docx import load_docx
from .html import load_html
from .image import IMAGE_SUFFIXES, load_image
from .markdown import load_markdown
from .pdf import load_pdf
from .pptx import load_pptx
from .text import load_text
from .xlsx import load_xlsx

LoaderFn = Callable[[str, bytes], Loaded]
OcrLoaderFn = Callable[[str, bytes, OcrOptions], Loaded]

OCR_LOADERS: dict[str, OcrLoaderFn] = {".pdf": load_pdf, **{suffix: load_image for suffix in IMAGE_SUFFIXES}}

LOADERS: dict[str, LoaderFn] = {
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".xlsx": load_xlsx,
    ".pptx": load_pptx,
    ".csv": load_csv,
    ".tsv": load_csv,
    ".text": load_text,
    **OCR_LOADERS,
}

__all__ = ["LOADERS", "Loaded", "LoaderFn", "OCR_LOADERS", "OcrLoaderFn"]
