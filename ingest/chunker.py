"""Token-aware, structure-aware chunking.

Contract: every chunk's `context_text()` (title › section, then body) counts at most `max_tokens` with the
`count_tokens` it is given (the reading model's tokenizer, special tokens included). Splitting prefers structure:

1. headings (`#` lines, and `第X章/节` lines) open sections; a chunk spans two sections only to keep a short one
   from standing alone: a section whose text counts fewer than `min_tokens` joins the chunk before it when both fit
   the budget, else opens a chunk that the next section may join. A one-line "Related" or "Contact" section alone
   would be mostly title and heading, and rank on them for every question that names the title. Such a chunk's
   section label lists the sections it holds ("A · B"), and its text keeps their heading lines. Tables never join;
2. within a section the units are articles (`第X条` up to the next article) when the document has them, else
   paragraphs and list items; whole units are packed together up to the budget, never split when they fit;
3. a unit over the budget is split into sentences (。！？；. ! ? ;), packed with `overlap` tokens of trailing
   sentences repeated at the start of the next piece;
4. a sentence over the budget is cut at the longest prefix that fits (binary search on characters).

Tables (`ingest.tables`: ``| a | b |`` row lines, header first, an optional ``Table:`` caption line) are units of
their own, one per data row: rows are packed whole, and every chunk of a table starts with the table's head (caption
and header row), so each row is read with its column names. A row that does not fit beside the head alone is cut like
any over-long unit (sentences, then tokens), every piece still under the head. A head that takes more than half the
budget (a sheet with hundreds of columns) is not repeated: that table is then packed like ordinary paragraphs.

A chunk also holds at most `max_tokens * MAX_CHARS_PER_TOKEN` characters, so text that a tokenizer folds into a
few unknown tokens (a 10 MB line of hex, a pasted blob) neither becomes a megabyte chunk nor costs a tokenizer pass
over megabytes for every cut: chunking stays linear in the document's length.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .clean import CN_NUMERALS
from .identity import chunk_id_for
from .tables import find_tables
from .types import Chunk, Document, context_text

CountTokens = Callable[[str], int]

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_CN_HEADING = re.compile(rf"^第[{CN_NUMERALS}]+([编章节])(?:\s+\S.*)?$")
_ARTICLE = re.compile(rf"^第[{CN_NUMERALS}]+条(?:之[{CN_NUMERALS}]+)?(?:\s|$|　)")
_LIST_ITEM = re.compile(rf"^(?:[-*+•]\s|\d{{1,3}}[.)、]\s?|[（(][{CN_NUMERALS}]+[）)]|[{CN_NUMERALS}]+、)")
# Sentence ends: CJK terminators stand alone; Latin ones need a following space (so "3.5" and "e.g." mostly survive).
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;…])|(?<=[.!?])(?=\s)")
_CN_LEVEL = {"编": 1, "章": 2, "节": 3}
_MAX_HEAD_CHARS = 160
MIN_SECTION_TOKENS = 48  # a shorter section joins a neighbour (see 1. above)
MAX_CHARS_PER_TOKEN = 16  # English averages about 4 characters a token and Chinese 1-2: never binding for prose


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    section: tuple[str, ...]
    head: str = ""  # a table row's caption and header, repeated above every chunk of its table
    is_head: bool = False  # the caption and header lines themselves: text only when the head is not repeated


def _lines(text: str) -> Iterator[tuple[int, str]]:
    pos = 0
    for line in text.split("\n"):
        yield pos, line
        pos += len(line) + 1


def _units(text: str) -> list[_Unit]:
    """Cut the text into structural units (articles, paragraphs, list items, table rows), each tagged with its
    heading path."""
    has_articles = any(_ARTICLE.match(line) for _, line in _lines(text))
    tables = find_tables(text)
    next_table = 0
    headings: list[str] = []
    units: list[_Unit] = []
    start: int | None = None
    end = 0

    def close() -> None:
        nonlocal start
        if start is not None and text[start:end].strip():
            units.append(_Unit(start, end, tuple(headings)))
        start = None

    for pos, raw in _lines(text):
        while next_table < len(tables) and tables[next_table].end < pos:
            next_table += 1
        if next_table < len(tables) and pos >= tables[next_table].start:  # a line of a table: its units are made
            table = tables[next_table]
            if pos == table.start:
                close()
                path = tuple(headings)
                units.append(_Unit(table.start, table.rows[0][0] - 1, path, table.head, is_head=True))
                units.extend(_Unit(a, b, path, table.head) for a, b in table.rows)
            continue
        line = raw.strip()
        md = _HEADING.match(line)
        cn = None if md else _CN_HEADING.match(line)
        if md or (cn and len(line) <= 40):
            close()
            level = len(md.group(1)) if md else _CN_LEVEL[cn.group(1)]
            del headings[level - 1:]
            headings.extend([""] * (level - 1 - len(headings)))
            headings.append(md.group(2) if md else line)
            continue
        if not line:
            if not has_articles:  # a blank line ends a paragraph; inside an article it does not
                close()
            continue
        boundary = _ARTICLE.match(line) if has_articles else (_LIST_ITEM.match(line) or start is None)
        if boundary:
            close()
        if start is None:
            start = pos
        end = pos + len(raw)
    close()
    return units


def _section_label(path: tuple[str, ...], title: str) -> str:
    parts = [p for p in path if p]
    if parts and parts[0] == title:  # the H1 usually repeats the title
        parts = parts[1:]
    return " › ".join(parts)[:_MAX_HEAD_CHARS]


def _sentences(text: str, base: int) -> list[tuple[int, int]]:
    spans, last = [], 0
    for match in _SENTENCE_END.finditer(text):
        cut = match.start()
        if cut > last and text[last:cut].strip():
            spans.append((base + last, base + cut))
            last = cut
    if text[last:].strip():
        spans.append((base + last, base + len(text)))
    return spans


class _Packer:
    """Collects (start, end) spans of the document into chunks under the token budget; a table's pieces also carry
    the head printed above them."""

    def __init__(self, doc: Document, count_tokens: CountTokens, max_tokens: int, overlap: int):
        self.doc, self.count, self.max, self.overlap = doc, count_tokens, max_tokens, overlap
        self.title = doc.title[:_MAX_HEAD_CHARS]
        self.pieces: list[tuple[int, int, str, str]] = []  # (start, end, section, head)
        self.max_chars = max_tokens * MAX_CHARS_PER_TOKEN
        self._repeatable: dict[tuple[str, str], bool] = {}
        self.offsets = doc.meta.get("page_offsets") or []

    def body(self, start: int, end: int, head: str) -> str:
        text = self.doc.text[start:end].strip()
        return f"{head}\n{text}" if head else text

    def fits(self, start: int, end: int, section: str, head: str = "") -> bool:
        if end - start + len(head) > self.max_chars:  # decided without tokenizing what may be megabytes
            return False
        return self.count(context_text(self.title, section, self.body(start, end, head))) <= self.max

    def repeatable(self, head: str, section: str) -> bool:
        """Whether a table head leaves at least half the budget to its rows."""
        if not head:
            return False
        key = (head, section)
        if key not in self._repeatable:
            self._repeatable[key] = (len(head) <= self.max_chars // 2 and
                                     self.count(context_text(self.title, section, head)) <= self.max // 2)
        return self._repeatable[key]

    def pack_units(self, units: list[_Unit], min_tokens: int = 0) -> None:
        names = [_section_label(unit.section, self.doc.title) for unit in units]
        # a unit opens a section when its label differs from the unit before it; a table is a section of its own
        opens = [i == 0 or names[i] != names[i - 1] or bool(units[i].head) != bool(units[i - 1].head)
                 for i in range(len(units))]
        short = self.short_sections(units, opens, min_tokens)
        current: tuple[int, int] | None = None
        labels: list[str] = []  # the sections the current chunk holds, in order
        head = ""
        joinable = False  # the current chunk holds whole short sections only: the next section may join it
        last = 0  # the unit the current chunk ends with
        for i, unit in enumerate(units):
            label = names[i]
            unit_head = unit.head if self.repeatable(unit.head, label) else ""
            if unit.is_head and unit_head:
                continue  # printed above each of the table's chunks instead
            if current and unit_head == head:
                if not opens[i] and self.fits(current[0], unit.end, _joined(labels), head):
                    current, last = (current[0], unit.end), i
                    joinable = joinable and i in short
                    continue
                if (opens[i] and not unit.head and not units[last].head and (i in short or joinable)
                        and self.page(current[0]) == self.page(unit.end)):
                    merged = [*labels, label]
                    if self.fits(current[0], unit.end, _joined(merged), head):
                        current, labels, last = (current[0], unit.end), merged, i
                        joinable = joinable and i in short
                        continue
            if current:
                self.pieces.append((*current, _joined(labels), head))
            labels, head, current, joinable = [label], unit_head, None, False
            if self.fits(unit.start, unit.end, label, head):
                current, last = (unit.start, unit.end), i
                joinable = opens[i] and i in short
            else:
                self.split_long(unit.start, unit.end, label, head)
        if current:
            self.pieces.append((*current, _joined(labels), head))

    def page(self, pos: int) -> int:
        """The page (or slide) `pos` is on: sections join only within one, so a chunk's page stays the page of all
        its text."""
        return bisect.bisect_right(self.offsets, pos)

    def short_sections(self, units: list[_Unit], opens: list[bool], min_tokens: int) -> set[int]:
        """Indexes of the units of every section (a run of units from one that `opens` to the next; tables never)
        whose text counts fewer than `min_tokens`."""
        short: set[int] = set()
        if min_tokens <= 0:
            return short
        starts = [i for i, first in enumerate(opens) if first] + [len(units)]
        for i, end in zip(starts, starts[1:]):
            first, last = units[i], units[end - 1]
            if not first.head and (last.end - first.start <= min_tokens * MAX_CHARS_PER_TOKEN and
                                   self.count(self.doc.text[first.start:last.end]) < min_tokens):
                short.update(range(i, end))
        return short

    def split_long(self, start: int, end: int, section: str, head: str) -> None:
        """Sentences packed greedily with a trailing-sentence overlap; an over-long sentence is cut by tokens."""
        spans = _sentences(self.doc.text[start:end], start)
        i = 0
        while i < len(spans):
            if not self.fits(spans[i][0], spans[i][1], section, head):
                self.cut_tokens(spans[i][0], spans[i][1], section, head)
                i += 1
                continue
            j = i
            while j + 1 < len(spans) and self.fits(spans[i][0], spans[j + 1][1], section, head):
                j += 1
            self.pieces.append((spans[i][0], spans[j][1], section, head))
            nxt = j + 1
            if nxt >= len(spans):
                break
            # Step back over this piece's trailing sentences worth at most `overlap` tokens (always past `i`, so
            # every piece moves forward), then forward again until the next sentence still fits with them.
            k = nxt
            while k - 1 > i and self.count(self.doc.text[spans[k - 1][0]:spans[j][1]]) <= self.overlap:
                k -= 1
            while k < nxt and not self.fits(spans[k][0], spans[nxt][1], section, head):
                k += 1
            i = k

    def cut_tokens(self, start: int, end: int, section: str, head: str) -> None:
        while start < end:
            window = min(end, start + self.max_chars - len(head))
            if self.fits(start, window, section, head):  # the whole window: one tokenizer call (blobs, the tail)
                self.pieces.append((start, window, section, head))
                start = window
                continue
            lo, hi = start + 1, window - 1
            while lo < hi:  # largest `stop` with fits(start, stop)
                mid = (lo + hi + 1) // 2
                if self.fits(start, mid, section, head):
                    lo = mid
                else:
                    hi = mid - 1
            if not self.fits(start, lo, section, head):
                raise ValueError(f"max_tokens={self.max} leaves no room for text after the title and section "
                                 f"of {self.doc.source}; raise max_tokens")
            self.pieces.append((start, lo, section, head))
            start = lo


def _joined(labels: list[str]) -> str:
    return " · ".join(dict.fromkeys(label for label in labels if label))[:_MAX_HEAD_CHARS]


def chunk(doc: Document, count_tokens: CountTokens, max_tokens: int = 512, overlap: int = 32,
          min_tokens: int = MIN_SECTION_TOKENS) -> list[Chunk]:
    """Split a document into chunks whose `context_text()` never exceeds `max_tokens` (see module docstring).

    `overlap` (tokens) applies where a unit had to be split into sentences; a section under `min_tokens` (at most a
    quarter of `max_tokens`) joins a neighbour (0: every section stands alone). A chunk of a table has
    ``meta["table_head"]``: the caption and header lines its text starts with. Raises ValueError for a budget too
    small to hold any text, or a negative `min_tokens`.
    """
    if max_tokens < 16:
        raise ValueError(f"max_tokens must be at least 16, got {max_tokens}")
    if overlap < 0 or overlap >= max_tokens // 2:
        raise ValueError(f"overlap must be in [0, max_tokens/2), got {overlap} with max_tokens={max_tokens}")
    if min_tokens < 0:
        raise ValueError(f"min_tokens must be 0 or more, got {min_tokens}")
    packer = _Packer(doc, count_tokens, max_tokens, overlap)
    packer.pack_units(_units(doc.text), min(min_tokens, max_tokens // 4))  # short is short beside the budget
    offsets = doc.meta.get("page_offsets") or []
    chunks = []
    for position, (start, end, section, head) in enumerate(packer.pieces):
        body = packer.body(start, end, head)
        page = bisect.bisect_right(offsets, start) if offsets else None
        chunks.append(Chunk(
            chunk_id=chunk_id_for(doc.doc_id, position, body),
            doc_id=doc.doc_id,
            text=body,
            title=packer.title,
            section=section,
            page=page,
            n_tokens=count_tokens(context_text(packer.title, section, body)),
            meta={"source": doc.source, "position": position, "start": start, "acl": list(doc.meta.get("acl", [])),
                  **({"table_head": head} if head else {})},
        ))
    return chunks
