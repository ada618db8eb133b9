"""Query terms highlighted in a chunk's text, safely: the result is HTML in which only `<mark>` is markup.

Terms come from the same analyzer BM25 uses (`retrieval.analyzer.analyze`): jieba words for Chinese, stemmed
words for English, stop words dropped. An English word in the text is marked when its stem is a query stem
("resets" for "reset"); a Chinese query word is marked wherever it occurs.

The text is split into marked and unmarked pieces on the raw string and every piece is HTML-escaped before the
`<mark>` tags are put around it, so nothing in a document (`<script>`, `&amp;`) can become markup, and a query
term can never match inside an entity that escaping introduced (a query "amp" does not break `&amp;`).
"""

from __future__ import annotations

import html
import re

from retrieval.analyzer import analyze, has_cjk

_LATIN_WORD = re.compile(r"[A-Za-z0-9]+(?:[._'-][A-Za-z0-9]+)*")
# Question words that BM25's stop list keeps (they cost it nothing) but that would light up every card.
_QUESTION_STEMS = frozenset(analyze("how do does did what when where why who which can could should i my me"))


def query_terms(query: str) -> tuple[list[str], set[str]]:
    """(Chinese words to find as substrings, longest first; English stems). Single Chinese characters are kept
    only when the query has nothing longer, so that a question does not light up every 的-like character."""
    tokens = analyze(query)
    cjk = sorted({t for t in tokens if has_cjk(t)}, key=lambda t: (-len(t), t))
    longer = [t for t in cjk if len(t) > 1]
    stems = {t for t in tokens if not has_cjk(t)} - _QUESTION_STEMS
    return (longer if longer else cjk), stems


def spans(text: str, query: str) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) character spans of `text` to mark for `query`, in order."""
    cjk, stems = query_terms(query)
    found: list[tuple[int, int]] = []
    if stems:
        for m in _LATIN_WORD.finditer(text):
            if set(analyze(m.group(0))) & stems:
                found.append(m.span())
    if cjk:
        pattern = re.compile("|".join(re.escape(t) for t in cjk))  # longest first: 离职手续 before 离职
        found.extend(m.span() for m in pattern.finditer(text))
    found.sort()
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start <= merged[-1][1]:  # touching spans become one mark
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(text: str, query: str) -> str:
    """`text` as HTML (escaped, newlines kept by the caller's CSS) with the query's terms in `<mark>`."""
    out: list[str] = []
    pos = 0
    for start, end in spans(text, query):
        out.append(html.escape(text[pos:start]))
        out.append(f"<mark>{html.escape(text[start:end])}</mark>")
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)
