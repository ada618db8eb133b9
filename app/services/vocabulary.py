"""Editing the administrators' words: the synonyms file and the user dictionary, written whole and checked.

`save_words` writes a file atomically (a temporary file beside it, then a rename), so a running API or app that
rereads it (`LiveSearch.watch`) sees the old file or the new one, never half of one. It returns the problems the
new text has: those lines are skipped by the reader, and the page that saved it lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ingest.files import atomic_write
from retrieval.analyzer import parse_user_dict
from retrieval.synonyms import parse_synonyms

Kind = Literal["synonyms", "user_dict"]


def check_words(kind: Kind, text: str, where: str) -> list[str]:
    """The lines of `text` that the reader of a `kind` file would skip, each with its line number."""
    if kind == "synonyms":
        return parse_synonyms(text, where)[1]
    return parse_user_dict(text, where)[1]


def read_words(path: Path) -> str:
    """The file's text ("" when there is none yet)."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return ""


def save_words(kind: Kind, path: Path, text: str) -> list[str]:
    """Replace the file at `path` with `text` (UTF-8, ending in a newline) in one step; the problems of the new
    text (`check_words`)."""
    path = Path(path)
    body = text.replace("\r\n", "\n").rstrip("\n") + "\n" if text.strip() else ""
    atomic_write(path, body)  # keeps the file's mode
    return check_words(kind, body, str(path))
