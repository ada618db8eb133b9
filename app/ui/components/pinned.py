"""Best-bet cards: the passages an administrator pinned to the question, above the results, each with its label
("recommended by HR") where a result has its score, so nobody takes a pin for a reranker's judgment.

`pinned_html` is pure (tested directly); `render_pinned` puts the cards on the page with thumbs, judged like any
result (the search recorded them as shown).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path

import streamlit as st

from app.services.results import Pinned

from .highlight import highlight

CSS = """
<style>
.kb-pinned { border-left: 0.3rem solid #bf8700; padding-left: 0.6rem; }
.kb-label { font-weight: 700; color: #7d4e00; background: #fff8c5; padding: 0 0.5rem; border-radius: 0.6rem;
            font-size: 0.85rem; }
</style>
"""


def pinned_html(pin: Pinned, query: str) -> str:
    """One pinned passage as HTML; every piece of text is escaped (see `highlight`)."""
    c = pin.chunk
    where = " › ".join(x for x in (c.title, c.section) if x)
    parts = [where] if where else []
    if c.page:
        parts.append(f"p. {c.page}")
    if c.meta.get("source"):
        parts.append(Path(c.meta["source"]).name)
    source = f'<div class="kb-source">{html.escape(" · ".join(parts))}</div>' if parts else ""
    return (f'<div class="kb-card kb-pinned" data-bet="{html.escape(pin.bet_id)}">'
            f'<div class="kb-head"><span class="kb-label">★ {html.escape(pin.label)}</span></div>'
            f'<div class="kb-text">{highlight(c.text, query)}</div>{source}</div>')


def render_pinned(pins: Sequence[Pinned], query: str, key: str,
                  judge: Callable[[str, str], None] | None = None) -> None:
    """The cards in the order given; with `judge`, thumbs as on the result cards (`cards.render_cards`)."""
    if not pins:
        return
    st.html(CSS)
    for pin in pins:
        with st.container(border=True):
            st.html(pinned_html(pin, query))
            if judge is not None:
                widget = f"{key}-fb-{pin.chunk.chunk_id}"
                st.feedback("thumbs", key=widget, on_change=judge, args=(pin.chunk.chunk_id, widget))
