"""The value every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Loaded:
    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


def join_pages(pages: list[str]) -> tuple[str, list[int]]:
    """Pages joined by a blank line, and the character offset where each page starts: what `meta["page_offsets"]`
    holds, so that each chunk knows its page. An empty page keeps its number (its offset repeats the next one's)."""
    offsets, pos = [], 0
    for page in pages:
        offsets.append(pos)
        pos += len(page) + 2  # the "\n\n" that joins pages
    return "\n\n".join(pages), offsets
