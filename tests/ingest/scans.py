"""Scans made on the spot: text drawn with a real CJK font into a page image (A4 at 200 dpi), and image-only PDFs
of such pages (no text layer, as a scanner writes them). Used by the OCR tests and `benchmarks/ocr_engines.py`."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

NOTO_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")  # Debian's fonts-noto-cjk
SC_INDEX = 2  # the Simplified Chinese face in the collection
A4_200DPI = (1654, 2339)
MARGIN = 140


def cjk_font(size: int = 36) -> ImageFont.FreeTypeFont:
    if not NOTO_CJK.is_file():
        raise FileNotFoundError(f"{NOTO_CJK} is missing: apt-get install fonts-noto-cjk")
    return ImageFont.truetype(str(NOTO_CJK), size, index=SC_INDEX)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Lines that fit `width`: Chinese breaks between any two characters, English between words."""
    out: list[str] = []
    for para in text.split("\n"):
        line = ""
        tokens = para.split(" ") if para.isascii() else list(para)
        sep = " " if para.isascii() else ""
        for tok in tokens:
            cand = f"{line}{sep}{tok}" if line else tok
            if font.getlength(cand) <= width:
                line = cand
            else:
                out.append(line)
                line = tok
        out.append(line)
    return out


def render_page(text: str, size: int = 36, page: tuple[int, int] = A4_200DPI) -> Image.Image:
    """`text` (paragraphs separated by newlines) in black on a white grey-scale page, wrapped to the margins."""
    font = cjk_font(size)
    img = Image.new("L", page, 255)
    draw = ImageDraw.Draw(img)
    y = MARGIN
    for line in _wrap(text, font, page[0] - 2 * MARGIN):
        draw.text((MARGIN, y), line, font=font, fill=0)
        y += int(size * 1.6)
    return img


def image_only_pdf(pages: Iterable[Image.Image]) -> bytes:
    """A PDF whose pages are just these images, each filling an A4 page: what a scanner produces. `pages` may be
    a generator, so a long scan is made one page image at a time."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4)
    for img in pages:
        pdf.drawImage(ImageReader(img), 0, 0, width=A4[0], height=A4[1])
        pdf.showPage()
    pdf.save()
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
