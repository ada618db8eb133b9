"""OCR engines behind one small contract: a page image in, its text and mean confidence out; offline, Chinese and
English.

Two engines, measured side by side by `benchmarks/ocr_engines.py` (figures in docs/INGEST.md):

- ``rapidocr`` (the default): RapidOCR 1.4.4 on ONNX Runtime, whose wheel carries the PP-OCRv4 detection and
  recognition models (one model reads Chinese and English; `languages` does not apply).
- ``tesseract``: the Debian `tesseract-ocr` program with its `chi_sim`/`eng` language packs, through pytesseract.

`read_page` applies the policy every loader shares: a page is either read (text plus confidence) or unreadable
with a reason a person can act on (nothing found, confidence under the threshold, over its time limit). Engines
are built once per process and kept (model loading costs about a second).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

import numpy as np
from PIL import Image

EngineName = Literal["rapidocr", "tesseract"]
ENGINES: tuple[EngineName, ...] = ("rapidocr", "tesseract")


@dataclass(frozen=True)
class OcrOptions:
    """How pages without a text layer are read. Built by the app from settings (`KB_OCR_*`) and passed down.

    `enabled` False refuses scans and images with a reason instead of reading them. `languages` are Tesseract
    language packs. `timeout_s` bounds one page. A page whose mean confidence is under `min_confidence` is
    reported, not indexed. PDF pages are rendered at `dpi`.
    """

    enabled: bool = True
    engine: EngineName = "rapidocr"
    languages: tuple[str, ...] = ("chi_sim", "eng")
    timeout_s: float = 60.0
    min_confidence: float = 0.6
    dpi: int = 200

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"OCR engine {self.engine!r} is unknown; use one of {', '.join(ENGINES)}")
        if self.timeout_s <= 0:
            raise ValueError(f"OCR timeout {self.timeout_s} s must be above 0")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"OCR min_confidence {self.min_confidence} must be within 0..1")
        if not 50 <= self.dpi <= 600:
            raise ValueError(f"OCR dpi {self.dpi} must be within 50..600")


@dataclass(frozen=True)
class PageText:
    """What an engine read on one page: lines in reading order, and their mean confidence (0..1, per character)."""

    text: str
    confidence: float


class OcrTimeout(Exception):
    """A page took longer than its time limit."""


class OcrUnavailable(ValueError):
    """The chosen engine is not installed; the message says what to install."""


class OcrEngine(Protocol):
    name: str

    def read(self, image: Image.Image, timeout_s: float) -> PageText:
        """Text of one page image; raises OcrTimeout past `timeout_s`."""
        ...


@dataclass(frozen=True)
class PageResult:
    """One page's outcome: `text` and `confidence` when read, else `reason` (why it was not indexed)."""

    page: int
    text: str = ""
    confidence: float = 0.0
    reason: str = ""

    @property
    def readable(self) -> bool:
        return not self.reason


def _mean_confidence(lines: list[tuple[str, float]]) -> float:
    chars = sum(len(t) for t, _ in lines)
    return sum(len(t) * s for t, s in lines) / chars if chars else 0.0


class RapidOcrEngine:
    """RapidOCR's detection → orientation → recognition, run stage by stage so that the time limit is checked
    between stages and between recognition batches (ONNX Runtime cannot be interrupted inside a run)."""

    name = "rapidocr"
    TEXT_FLOOR = 0.5  # RapidOCR's own `text_score`: lines under it are guesses, kept out of the text

    def __init__(self) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise OcrUnavailable("RapidOCR is not installed; `pip install rapidocr_onnxruntime==1.4.4` "
                                 "or set KB_OCR_ENGINE=tesseract") from exc
        self._ocr = RapidOCR()

    def read(self, image: Image.Image, timeout_s: float) -> PageText:
        deadline = time.monotonic() + timeout_s
        ocr = self._ocr
        img = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])  # RGB → BGR, as OpenCV reads
        img, _, _ = ocr.preprocess(img)
        img, _ = ocr.maybe_add_letterbox(img, {})
        boxes, _ = ocr.auto_text_det(img)
        if boxes is None:
            return PageText("", 0.0)
        crops = ocr.get_crop_img_list(img, boxes)
        _check(deadline, timeout_s)
        crops, _, _ = ocr.text_cls(crops)
        lines: list[tuple[str, float]] = []
        batch = ocr.text_rec.rec_batch_num
        for start in range(0, len(crops), batch):
            _check(deadline, timeout_s)
            recognised, _ = ocr.text_rec(crops[start:start + batch])
            lines += [(str(text), float(score)) for text, score, *_ in recognised]
        text = "\n".join(t for t, s in lines if s >= self.TEXT_FLOOR and t.strip())
        return PageText(text, _mean_confidence(lines))


def _check(deadline: float, timeout_s: float) -> None:
    if time.monotonic() > deadline:
        raise OcrTimeout(f"OCR took over the {timeout_s:g} s limit")


_CJK_GAP = re.compile(r"(?<=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]) (?=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef])")


class TesseractEngine:
    """Tesseract through pytesseract; the time limit is Tesseract's own (the process is killed past it)."""

    name = "tesseract"

    def __init__(self, languages: tuple[str, ...]) -> None:
        try:
            import pytesseract
            available = set(pytesseract.get_languages())
        except (ImportError, OSError, RuntimeError) as exc:  # no module, or no `tesseract` program on PATH
            raise OcrUnavailable("Tesseract is not installed; `apt-get install tesseract-ocr tesseract-ocr-chi-sim "
                                 "tesseract-ocr-eng` and `pip install pytesseract`, or set KB_OCR_ENGINE=rapidocr"
                                 ) from exc
        missing = [lang for lang in languages if lang not in available]
        if missing:
            raise OcrUnavailable(f"Tesseract has no language pack for {', '.join(missing)}; install "
                                 f"{' '.join('tesseract-ocr-' + m.replace('_', '-') for m in missing)}")
        self._tess = pytesseract
        self.lang = "+".join(languages)

    def read(self, image: Image.Image, timeout_s: float) -> PageText:
        try:
            data = self._tess.image_to_data(image, lang=self.lang, timeout=timeout_s,
                                            output_type=self._tess.Output.DICT)
        except RuntimeError as exc:  # pytesseract's way of saying that it killed the process at the time limit
            if "timeout" in str(exc).lower():
                raise OcrTimeout(f"OCR took over the {timeout_s:g} s limit") from exc
            raise
        words: dict[tuple[int, int, int], list[tuple[str, float]]] = {}
        for text, conf, *key in zip(data["text"], data["conf"], data["block_num"], data["par_num"],
                                    data["line_num"], strict=True):
            if float(conf) >= 0 and str(text).strip():
                words.setdefault(tuple(key), []).append((str(text), float(conf) / 100))
        lines = [(_CJK_GAP.sub("", " ".join(t for t, _ in line)), _mean_confidence(line)) for line in words.values()]
        return PageText("\n".join(t for t, _ in lines), _mean_confidence(lines))


@lru_cache(maxsize=4)
def engine_for(name: EngineName, languages: tuple[str, ...]) -> OcrEngine:
    """The engine `name`, built once per process. Raises OcrUnavailable saying what to install."""
    return RapidOcrEngine() if name == "rapidocr" else TesseractEngine(languages)


def read_page(page: int, image: Image.Image, options: OcrOptions) -> PageResult:
    """Read one page (1-based number `page`) with the engine `options` name. Unreadable pages carry a reason
    instead of text: nothing found, mean confidence under `options.min_confidence`, or over `options.timeout_s`.
    Raises OcrUnavailable when the engine is missing (every page would fail alike)."""
    engine = engine_for(options.engine, options.languages)
    if image.mode not in ("1", "L", "RGB"):  # CMYK, palette, alpha: what both engines read without surprises
        image = image.convert("RGB")
    try:
        got = engine.read(image, options.timeout_s)
    except OcrTimeout as exc:
        return PageResult(page, reason=f"{exc}; raise KB_OCR_TIMEOUT_S or split the page")
    except Exception as exc:  # OpenCV, ONNX Runtime and Tesseract fail in their own ways on odd pages; one such
        # page must not stop the file, let alone the ingest.
        return PageResult(page, reason=f"OCR failed ({exc.__class__.__name__}: {exc}); rescan or re-export the page")
    if not got.text.strip():
        return PageResult(page, reason="OCR found no text (a blank or picture-only page)")
    if got.confidence < options.min_confidence:
        return PageResult(page, confidence=got.confidence,
                          reason=f"OCR confidence {got.confidence:.2f} is under {options.min_confidence:.2f} "
                                 "(blurred, skewed or handwritten?); rescan it at 300 dpi")
    return PageResult(page, text=got.text, confidence=got.confidence)


def ocr_meta(engine: str, results: list[PageResult]) -> dict:
    """`meta["ocr"]`: which pages OCR read and with what mean confidence, and which it could not, with why."""
    return {"engine": engine,
            "pages": [{"page": r.page, "confidence": round(r.confidence, 3)} for r in results if r.readable],
            "unreadable": [{"page": r.page, "reason": r.reason} for r in results if not r.readable]}
