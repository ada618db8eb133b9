"""Web pages (`kb crawl`): the page's main content with trafilatura, which drops the site's menus, headers,
footers and sidebars that every page of an intranet repeats; headings come out as `#` lines and tables as
`| a | b |` rows, like the other loaders. A page trafilatura finds no main content in (a bare list of links, a
very short page) is read whole by the HTML loader instead, so nothing a crawl fetched is lost for that reason."""

from __future__ import annotations

import trafilatura

from .base import Loaded
from .html import load_html


def load_web_page(name: str, data: bytes) -> Loaded:
    """(title, main text) of an HTML page; `meta["extractor"]` says which reader produced the text."""
    text = trafilatura.extract(data, output_format="markdown", include_tables=True, include_comments=False,
                               include_formatting=True, include_links=False, include_images=False)
    if not text or not text.strip():
        whole = load_html(name, data)
        return Loaded(title=whole.title, text=whole.text, meta={**whole.meta, "extractor": "html"})
    found = trafilatura.extract_metadata(data)
    title = (found.title if found is not None and found.title else "") or load_html(name, data).title
    return Loaded(title=title, text=text, meta={"extractor": "trafilatura"})
