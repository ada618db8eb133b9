"""Core types of the ingest stage: a loaded `Document` and the `Chunk`s cut from it.

Frozen dataclasses: every stage returns new objects and never mutates its input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """One source file, cleaned to text.

    `text` keeps structure as Markdown-like lines (``# heading``, ``- item``, ``| a | b |`` table rows) so that
    one chunker handles every format. `meta` holds at least ``format`` and ``content_hash``; PDFs add
    ``page_offsets`` (character offset in `text` where each page starts), text files ``encoding``; every document
    has ``acl`` (a list of access groups; empty means everyone) and ``fields`` (its own metadata from front-matter
    or a sidecar, values as strings or lists of strings: what search filters match).
    """

    doc_id: str
    source: str
    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough for the models that read it.

    `text` is the body; `context_text()` (title and heading path, then the body) is what embedders and rerankers
    read, and it is what the chunker keeps under `max_tokens`.
    """

    chunk_id: str
    doc_id: str
    text: str
    title: str = ""
    section: str = ""
    page: int | None = None
    n_tokens: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def context_text(self) -> str:
        return context_text(self.title, self.section, self.text)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chunk:
        return cls(**data)


def context_text(title: str, section: str, body: str) -> str:
    """The text a model reads for a chunk: ``title › section`` on the first line, then the body.

    The heading line is why a chunk that starts with "第三条" still says which policy it comes from.
    """
    head = " › ".join(part for part in (title, section) if part)
    return f"{head}\n{body}" if head else body
