"""PPTX with python-pptx: each slide a `# title` section (`Slide N` when it has no title), then its text boxes,
its tables (`ingest.tables`) and its speaker notes (``Speaker notes:``), shapes in reading order (top to bottom,
then left to right; groups opened). Chunks carry the slide number as their `page`.

Refused with a reason: password-protected or legacy .ppt files, damaged archives and zip bombs
(`ooxml.check_package`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import PurePath

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.shapes.base import BaseShape

from ..clean import clean_text
from ..tables import table_lines
from .base import Loaded
from .ooxml import check_package

NOTES_PREFIX = "Speaker notes: "


def _reading_order(shapes: Iterable[BaseShape]) -> Iterator[BaseShape]:
    """Shapes top to bottom, then left to right, group shapes replaced by their members."""
    for shape in sorted(shapes, key=lambda s: (s.top or 0, s.left or 0)):
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _reading_order(shape.shapes)
        else:
            yield shape


def _slide_lines(slide, number: int) -> list[str]:
    title_shape = slide.shapes.title
    title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
    lines = [f"# {title or f'Slide {number}'}", ""]
    for shape in _reading_order(slide.shapes):
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        if shape.has_table:
            rows = ([cell.text for cell in row.cells] for row in shape.table.rows)
            lines += [*table_lines(rows), ""]
        elif shape.has_text_frame:
            paragraphs = [p.text.strip() for p in shape.text_frame.paragraphs]
            lines += [*(p for p in paragraphs if p), ""]
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = [p.strip() for p in slide.notes_slide.notes_text_frame.text.splitlines() if p.strip()]
        if notes:
            lines += [NOTES_PREFIX + notes[0], *notes[1:]]  # one paragraph: the notes stay together
    return lines


def load_pptx(name: str, data: bytes) -> Loaded:
    check_package(data, "PPTX", "ppt/presentation.xml")
    try:
        presentation = pptx.Presentation(io.BytesIO(data))
        slides = [clean_text("\n".join(_slide_lines(slide, n))) for n, slide in enumerate(presentation.slides, 1)]
        core_title = (presentation.core_properties.title or "").strip()
    except Exception as exc:  # python-pptx raises KeyError, XML and zip errors on damaged parts
        raise ValueError(f"damaged PPTX ({exc.__class__.__name__}: {exc}); re-save it from PowerPoint or "
                         "LibreOffice") from exc
    offsets, pos = [], 0
    for text in slides:  # where each slide starts in the joined text: chunk.page is the slide number
        offsets.append(pos)
        pos += len(text) + 2
    first_title = slides[0].split("\n", 1)[0].removeprefix("# ") if slides else ""
    title = core_title or (first_title if slides and first_title != "Slide 1" else PurePath(name).stem)
    return Loaded(title=title, text="\n\n".join(slides), meta={"slides": len(slides), "page_offsets": offsets})
