"""Stable identities: a document's id comes from where it lives, a chunk's from its document, position and text."""

from __future__ import annotations

import hashlib
from pathlib import Path


def source_of(path: str | Path) -> str:
    """The canonical source string of a local file: its absolute POSIX path."""
    return Path(path).resolve().as_posix()


def doc_id_for(source: str) -> str:
    """16 hex characters of SHA-256 of the source; URL- and filename-safe, the same on every run."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def content_hash(data: bytes) -> str:
    """SHA-256 of a file's bytes: an unchanged file has an unchanged hash, so re-ingesting it is a no-op."""
    return hashlib.sha256(data).hexdigest()


def chunk_id_for(doc_id: str, position: int, text: str) -> str:
    """``<doc_id>-<position>-<8 hex of the text's hash>``: stable while the document is unchanged."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{doc_id}-{position:04d}-{digest}"
