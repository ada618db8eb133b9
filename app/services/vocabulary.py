"""The administrators' words: the user dictionary (how BM25 cuts Chinese text) and the synonyms (what a query also
searches), kept as the entries "user_dict" and "synonyms" of the shared database (`app.services.control`), so every
process on every machine uses the same ones.

`VocabularyStore.load()` reads both into a `Vocabulary` whose `stamp` is the pair of entry versions; a watcher
compares `stamp()` with it (`LiveSearch.check_vocabulary`). `save` replaces one entry whole, in one step (a reader
sees the old text or the new one), only if nobody saved it since the version the editor started from, and returns
the problems of the new text: those lines are skipped by the reader, and the page or command that saved lists
them. The files of before (`user_dict` / `synonyms` settings, else userdict.txt / synonyms.txt beside the index
folder) are imported once, when the database has no entry of their kind; the log says so.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Literal, get_args

from retrieval.analyzer import parse_user_dict
from retrieval.synonyms import parse_synonyms
from retrieval.vocabulary import Vocabulary, parse_vocabulary

from ..errors import KbError
from .control import ControlStore, Entry

log = logging.getLogger(__name__)

Kind = Literal["user_dict", "synonyms"]
KINDS: tuple[Kind, ...] = get_args(Kind)
CURRENT = -1  # `save(expect=CURRENT)`: on top of whatever is stored now (a command given a whole new text)


def check_words(kind: Kind, text: str, where: str | None = None) -> list[str]:
    """The lines of `text` that the reader of `kind` would skip, each with `where` (default: the kind) and its
    line number."""
    where = where or kind
    if kind == "synonyms":
        return parse_synonyms(text, where)[1]
    return parse_user_dict(text, where)[1]


def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise KbError("validation", f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return kind  # type: ignore[return-value]


def normalized(text: str) -> str:
    """What is stored for `text`: Unix line ends, one final newline ("" for blank text)."""
    return text.replace("\r\n", "\n").rstrip("\n") + "\n" if text.strip() else ""


class VocabularyStore:
    """Both kinds in `control`; `files` (kind → path or None) are the files of before, imported when the database
    has no entry of that kind."""

    def __init__(self, control: ControlStore, files: dict[str, Path | None] | None = None):
        self.control = control
        self.files = {k: Path(p) if p is not None else None for k, p in (files or {}).items()}

    def stamp(self) -> tuple[int | None, int | None]:
        """(user dictionary version, synonyms version): what changes when either is saved."""
        return self.control.version("user_dict"), self.control.version("synonyms")

    def entry(self, kind: str) -> Entry | None:
        """The stored entry of `kind` (the file of before imported first when there is none)."""
        kind = _kind(kind)
        entry = self.control.read(kind)
        return entry if entry is not None else self._import(kind)

    def text(self, kind: str) -> tuple[str, int | None]:
        """(the text of `kind`, its version); ("", None) before anything was saved."""
        entry = self.entry(kind)
        return (entry.body, entry.version) if entry is not None else ("", None)

    def load(self) -> Vocabulary:
        """Both kinds, parsed; lines that cannot be read are in `problems`, never failing the rest."""
        texts: dict[str, tuple[str, int | None]] = {}
        problems: list[str] = []
        for kind in KINDS:
            try:
                texts[kind] = self.text(kind)
            except KbError as exc:  # a file of before that cannot be imported: said, the other kind still used
                if exc.kind != "unprocessable":
                    raise
                texts[kind] = ("", None)
                problems.append(exc.message)
        vocab = parse_vocabulary(texts["user_dict"][0], texts["synonyms"][0],
                                 (texts["user_dict"][1], texts["synonyms"][1]))
        return replace(vocab, problems=(*problems, *vocab.problems)) if problems else vocab

    def save(self, kind: str, text: str, by: str, expect: int | None = CURRENT) -> tuple[Entry, list[str]]:
        """Replace `kind` with `text` if its version is still `expect` (None: nothing saved yet; CURRENT: whatever
        is there now). Returns the new entry and the problems of the text. KbError conflict when someone saved it
        first: nothing is written."""
        kind = _kind(kind)
        if not isinstance(text, str):
            raise KbError("validation", f"{kind} must be text; got {type(text).__name__}")
        body = normalized(text)
        if expect == CURRENT:
            expect = self.text(kind)[1]
        entry = self.control.write(kind, body, by, expect)
        return entry, check_words(kind, body)

    def _import(self, kind: Kind) -> Entry | None:
        path = self.files.get(kind)
        if path is None or not path.is_file():
            return None
        try:
            body = normalized(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError) as exc:  # left for a fixed file; said at every load until then
            raise KbError("unprocessable", f"{path}: cannot be read ({exc}); save it as UTF-8 text to import it "
                                           f"into the shared database as the {kind.replace('_', ' ')}") from None
        try:
            entry = self.control.write(kind, body, f"import of {path}", expect=None)
        except KbError as exc:
            if exc.kind != "conflict":
                raise
            return self.control.read(kind)  # another process imported it first
        log.warning("imported the %s from %s into %s; that file is no longer read: edit it on the Vocabulary page "
                    "or with `kb vocabulary`", kind.replace("_", " "), path, self.control.where)
        return entry
