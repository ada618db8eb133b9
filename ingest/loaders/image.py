"""Images (PNG, JPEG, TIFF, BMP, WebP) read by OCR; each frame of a multi-page TIFF is a page."""

from __future__ import annotations

import io
import warnings
from pathlib import PurePath

from PIL import Image, ImageSequence, UnidentifiedImageError

from ..clean import clean_text, join_wrapped_cjk_lines
from ..ocr import OcrOptions, PageResult, ocr_meta, read_page
from .base import Loaded, join_pages

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# Pillow's own decompression-bomb threshold (about 89 megapixels, a 9,500 × 9,500 scan): a small file declaring
# more would need gigabytes once decoded. Checked on the header, before any pixel is decoded.
MAX_PIXELS = 89_478_485
MAX_FRAMES = 5000  # as many pages as a PDF may have


def _bomb(width: int, height: int) -> str:
    return (f"image is {width:,} × {height:,} pixels ({width * height / 1e6:,.0f} megapixels), over the "
            f"{MAX_PIXELS / 1e6:.0f}-megapixel limit (a decompression bomb?); scan it at 300 dpi or less")


def unreadable_reason(results: list[PageResult], limit: int = 3) -> str:
    """Why no page of a file could be used, naming the first few pages and their reasons."""
    parts = [f"page {r.page}: {r.reason}" for r in results[:limit]]
    more = f" (and {len(results) - limit} more pages)" if len(results) > limit else ""
    return "no page could be read by OCR: " + "; ".join(parts) + more


def load_image(name: str, data: bytes, ocr: OcrOptions | None = None) -> Loaded:
    """OCR every frame of the image; raises ValueError (corrupt, bomb, OCR off, nothing readable) with the fix."""
    ocr = ocr if ocr is not None else OcrOptions()
    if not ocr.enabled:
        raise ValueError("images are read by OCR, which is off; set KB_OCR_ENABLED=true to index them")
    results: list[PageResult] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                for number, frame in enumerate(ImageSequence.Iterator(img), start=1):
                    if number > MAX_FRAMES:
                        raise ValueError(f"image has over {MAX_FRAMES} frames; split it")
                    if frame.width * frame.height > MAX_PIXELS:
                        raise ValueError(_bomb(frame.width, frame.height))
                    frame.load()
                    results.append(read_page(number, frame, ocr))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"image is over the {MAX_PIXELS / 1e6:.0f}-megapixel limit (a decompression bomb?): "
                         f"{exc}") from exc
    except UnidentifiedImageError as exc:
        raise ValueError("not a readable image (unknown or corrupt format); re-export it as PNG or JPEG") from exc
    except (OSError, SyntaxError, EOFError) as exc:  # Pillow's ways of saying truncated or damaged
        raise ValueError(f"corrupt or truncated image ({exc}); re-export it as PNG or JPEG") from exc
    pages = [join_wrapped_cjk_lines(clean_text(r.text)) for r in results]
    if not any(pages):
        raise ValueError(unreadable_reason(results))
    text, offsets = join_pages(pages)
    first = next((line for line in text.splitlines() if line.strip()), "")
    title = first if len(first) <= 80 else PurePath(name).stem
    return Loaded(title=title, text=text,
                  meta={"pages": len(results), "page_offsets": offsets, "ocr": ocr_meta(ocr.engine, results)})
