"""Text cleaning shared by every loader, and by the reranker for candidate text.

Pure functions, no I/O. Chinese punctuation is left alone (no NFKC): full-width "，。" carry sentence structure.
"""

from __future__ import annotations

import html
import re
from collections import Counter

# Characters of Chinese article and item numbers (第十二条, （三）), Arabic and full-width digits included.
CN_NUMERALS = "零〇一二三四五六七八九十百千万两0-9０-９"
# C0/C1 control characters except tab and newline, plus zero-width characters and the BOM.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")
# Horizontal whitespace, including NBSP and the ideographic space that Chinese documents indent with.
_HSPACE = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_TAG = re.compile(r"<[a-zA-Z!/][^>]*>")


def clean_text(text: str) -> str:
    """Normalise line ends, drop control characters, collapse runs of spaces and blank lines, trim lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = [_HSPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def strip_markup(text: str) -> str:
    """Text a person would read from a snippet that may hold HTML: tags removed, entities decoded, cleaned.

    Cheap when there is no markup (the common case for chunk text); BeautifulSoup only when a tag is seen.
    """
    if _TAG.search(text):
        from .loaders.html import html_to_text  # block tags become line breaks, inline tags join their words

        text = html_to_text(text)[1]
    elif "&" in text:
        text = html.unescape(text)
    return clean_text(text)


_PAGE_NUMBER = re.compile(r"(?i)\bpage\b|\bp\.\s*\d|第\s*\d+\s*页|^\W*\d+\W*$|\d+\s*/\s*\d+|\bof\s+\d+")


def _signature(line: str) -> str:
    # Page numbers change from page to page: "Policy – page 3 of 9" must match its twins, so digits are masked in
    # lines that look like page numbering; other lines must repeat exactly ("Rule 3" on page 3 is body text).
    line = line.strip()
    return re.sub(r"\d+", "#", line) if _PAGE_NUMBER.search(line) else line


def drop_repeated_lines(pages: list[str], edge_lines: int = 2, min_share: float = 0.6) -> list[str]:
    """Remove running headers and footers from PDF pages.

    A line among the first or last `edge_lines` of a page is dropped when the same line (digits ignored in page
    numbering, so "page 3" matches "page 4") stands at an edge of at least `min_share` of the pages, and of two
    pages at least. Needs two pages or more to judge.
    """
    if len(pages) < 2:
        return pages
    counts: Counter[str] = Counter()
    for page in pages:
        lines = [line for line in page.split("\n") if line.strip()]
        edges = set(lines[:edge_lines] + lines[-edge_lines:])
        counts.update({_signature(line) for line in edges})
    repeated = {sig for sig, n in counts.items() if n >= max(2, min_share * len(pages))}
    if not repeated:
        return pages
    cleaned = []
    for page in pages:
        lines = page.split("\n")
        nonblank = [i for i, line in enumerate(lines) if line.strip()]
        edge_idx = set(nonblank[:edge_lines] + nonblank[-edge_lines:])
        kept = [line for i, line in enumerate(lines) if not (i in edge_idx and _signature(line) in repeated)]
        cleaned.append("\n".join(kept))
    return cleaned


_CJK_CHAR = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
_CJK_OPEN_END = re.compile(rf"(?:{_CJK_CHAR}|[，、（《“「])$")
_CJK_CONT = re.compile(rf"^(?:{_CJK_CHAR}|[，、；：。）》」』”《「“（])")
_STRUCTURAL = re.compile(rf"^(?:第[{CN_NUMERALS}]+[编章节条]|[（(][{CN_NUMERALS}]+[)）]|[{CN_NUMERALS}]+、|#|[-•*] )")


def join_wrapped_cjk_lines(page: str, full_share: float = 0.8) -> str:
    """Undo the line wrapping a PDF puts inside Chinese sentences ("双\n方" → "双方").

    A line is joined to the next when it was nearly as long as the page's longest line (it was wrapped, not
    ended), ends inside a Chinese sentence, and the next line continues in Chinese without starting a structure
    of its own (第X条, 第X章, （一）, a bullet). Short lines such as headings always stay.
    """
    lines = page.split("\n")
    widest = max((len(line) for line in lines), default=0)
    out: list[str] = []
    wrapped = False  # whether the previous *original* line looked wrapped
    for line in lines:
        if out and wrapped and _CJK_CONT.match(line) and not _STRUCTURAL.match(line):
            out[-1] += line
        else:
            out.append(line)
        wrapped = len(line) >= full_share * widest and bool(_CJK_OPEN_END.search(line))
    return "\n".join(out)
