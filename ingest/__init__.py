"""Layer 1: files → `Document` → `Chunk`s. No torch, no models: token counting is passed in as a function."""

from .chunker import CountTokens, chunk
from .clean import clean_text, strip_markup
from .discover import Discovery, discover
from .errors import IngestError
from .load import SUPPORTED_SUFFIXES, fingerprint, load, load_bytes
from .ocr import OcrOptions
from .types import Chunk, Document, context_text

__all__ = [
    "Chunk", "CountTokens", "Discovery", "Document", "IngestError", "SUPPORTED_SUFFIXES", "chunk", "clean_text",
    "context_text", "discover", "fingerprint", "load", "load_bytes", "OcrOptions", "strip_markup",
]
