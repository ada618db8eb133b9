"""HTML with BeautifulSoup: boilerplate (scripts, styles, navigation, footers, comments) removed; headings become
`#` lines, list items `- ` lines, table rows `| a | b |` lines and a `<caption>` a `Table:` line above them
(`ingest.tables`), so the chunker sees the page's structure."""

from __future__ import annotations

from pathlib import PurePath

from bs4 import BeautifulSoup, Comment, NavigableString, Tag

from ..tables import CAPTION_PREFIX, cell_text, row_line
from .base import Loaded

# libxml2's own nesting limit for XML (without XML_PARSE_HUGE); real pages stay far below it. Deeper trees are
# refused: every insert into a bs4 tree walks the ancestors, so 10,000 nested tags would cost minutes.
MAX_DEPTH = 256

_DROP = ["script", "style", "noscript", "template", "nav", "footer", "aside", "form", "iframe", "svg", "button"]
_BLOCKS = ["p", "div", "section", "article", "main", "blockquote", "pre", "dd", "dt", "br", "hr", "table", "ul", "ol"]


def _too_deep(soup: BeautifulSoup) -> bool:
    """Whether any tag is nested more than MAX_DEPTH levels deep (an iterative walk: no recursion, linear time)."""
    stack = [(soup, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in node.contents if isinstance(child, Tag))
    return False


def html_to_text(markup: bytes | str) -> tuple[str, str]:
    """Return (title, structured text) of an HTML page. Encoding comes from the page (meta charset) or detection.

    Raises ValueError for a page nested more than MAX_DEPTH tags deep."""
    soup = BeautifulSoup(markup, "lxml")
    if _too_deep(soup):
        raise ValueError(f"HTML is nested more than {MAX_DEPTH} tags deep; simplify the page or save it as text")
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    for tag in soup(_DROP):
        tag.decompose()
    title_tag = soup.find("title")
    h1 = soup.find("h1")
    # The <h1> names the document; <title> often carries the site's name too ("Leave policy | Intranet").
    title = (h1.get_text(" ", strip=True) if h1 else "") or (title_tag.get_text(" ", strip=True) if title_tag else "")
    if title_tag:
        title_tag.decompose()
    for level in range(1, 7):
        for tag in soup.find_all(f"h{level}"):
            tag.replace_with(NavigableString(f"\n\n{'#' * level} {tag.get_text(' ', strip=True)}\n\n"))
    for caption in soup.find_all("caption"):
        caption.replace_with(NavigableString(f"\n{CAPTION_PREFIX}{caption.get_text(' ', strip=True)}\n"))
    for row in soup.find_all("tr"):
        cells = [cell_text(cell.get_text(" ", strip=True)) for cell in row.find_all(["td", "th"])]
        row.replace_with(NavigableString("\n" + row_line(cells) + "\n"))
    for item in soup.find_all("li"):
        item.insert_before(NavigableString("\n- "))
        item.insert_after(NavigableString("\n"))
    for tag in soup.find_all(_BLOCKS):
        tag.insert_after(NavigableString("\n\n" if tag.name not in ("br",) else "\n"))
    root = soup.body or soup
    # Rows and list items come out separated by the page's whitespace; keep consecutive ones in one block.
    lines = [line.strip() for line in root.get_text().split("\n")]
    kept: list[str] = []
    for line in lines:
        if not line and kept and kept[-1].startswith(("| ", "- ", CAPTION_PREFIX)):
            continue
        if line.startswith(("| ", "- ")) and len(kept) >= 2 and kept[-1] == "" and kept[-2].startswith(line[:2]):
            kept.pop()
        kept.append(line)
    return title, "\n".join(kept)


def load_html(name: str, data: bytes) -> Loaded:
    try:
        title, text = html_to_text(data)
    except RecursionError as exc:
        raise ValueError("HTML is nested too deeply to parse; simplify the page or save it as text") from exc
    return Loaded(title=title or PurePath(name).stem, text=text)
