"""Result cards: rank, normalised score (green above 0.5, red at or below, with the band word so colour is not
the only signal), raw score in small grey, a bar exactly as wide as the score, highlighted text and the source.

`card_html` is pure (tested directly); `render_cards` puts the cards on the page, each in a bordered container
with a download button for the source file when it is on this machine and the caller may read it.
"""

from __future__ import annotations

import html
import mimetypes
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import streamlit as st

from app.identity import Caller
from ingest.files import read_nofollow

from .highlight import highlight
from .rows import Row

PASS_ABOVE = 0.5  # the colour rule: green > 0.5, red <= 0.5 (the threshold slider is separate)
NOT_RERANKED = "not reranked — recall order"  # beyond the latency budget, or shown while reranking runs

CSS = """
<style>
.kb-card { font-size: 0.95rem; line-height: 1.5; }
.kb-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.6rem; margin-bottom: 0.3rem; }
.kb-rank { font-weight: 700; font-size: 1.05rem; min-width: 2.6rem; }
.kb-score { font-weight: 700; font-size: 1.25rem; font-variant-numeric: tabular-nums; }
.kb-band { font-weight: 600; padding: 0 0.5rem; border-radius: 0.6rem; font-size: 0.85rem; }
.kb-raw, .kb-retrieval, .kb-model { color: #6e7781; font-size: 0.78rem; font-variant-numeric: tabular-nums; }
.kb-pass { color: #1a7f37; }
.kb-fail { color: #cf222e; }
.kb-none { color: #6e7781; }
.kb-band.kb-pass { background: #dafbe1; }
.kb-band.kb-fail { background: #ffebe9; }
.kb-band.kb-none { background: #eaeef2; }
.kb-bar { width: 100%; height: 0.55rem; background: #eaeef2; border-radius: 0.3rem; overflow: hidden;
          margin: 0.2rem 0 0.6rem 0; }
.kb-fill { height: 100%; }
.kb-fill.kb-pass { background: #2da44e; }
.kb-fill.kb-fail { background: #e5534b; }
.kb-text { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 16rem; overflow-y: auto; }
.kb-text mark { background: #fff3b0; padding: 0 0.1rem; border-radius: 0.2rem; }
.kb-source { color: #57606a; font-size: 0.82rem; margin-top: 0.4rem; overflow-wrap: anywhere; }
</style>
"""


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, 21st, 101st, 111th."""
    if n < 1:
        raise ValueError(f"rank must be at least 1; got {n}")
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def verdict(score: float | None) -> str:
    """The CSS class of a score: kb-pass (> 0.5), kb-fail (<= 0.5), kb-none (no reranker score)."""
    if score is None:
        return "kb-none"
    return "kb-pass" if score > PASS_ABOVE else "kb-fail"


def source_line(row: Row) -> str:
    where = " › ".join(x for x in (row.title, row.section) if x)
    parts = [where] if where else []
    if row.page:
        parts.append(f"p. {row.page}")
    if row.source:
        parts.append(Path(row.source).name)
    return " · ".join(parts)


def model_label(name: str) -> str:
    """A model as a person names it: a folder by its own name (models/reranker_zh_v2 → reranker_zh_v2)."""
    return Path(name).name if "/" in name and Path(name).is_absolute() else name


def card_html(row: Row, query: str) -> str:
    """One card as HTML. Every piece of document or query text is escaped (see `highlight`)."""
    cls = verdict(row.score)
    head = [f'<span class="kb-rank">{ordinal(row.rank)}</span>']
    if row.score is None:
        label = NOT_RERANKED if row.not_reranked else "no reranker score"
        head.append(f'<span class="kb-score kb-none">—</span><span class="kb-band kb-none">{label}</span>')
    else:
        head.append(f'<span class="kb-score {cls}">{row.score:.4f}</span>'
                    f'<span class="kb-band {cls}">{html.escape(row.band or "")}</span>'
                    f'<span class="kb-raw">raw {row.raw_score:.4f}</span>')
    if row.retrieval_score is not None:
        head.append(f'<span class="kb-retrieval">retrieval {row.retrieval_score:.4f} · '
                    f'{html.escape(row.leg or "")}</span>')
    if row.reranker and row.score is not None:
        head.append(f'<span class="kb-model" title="{html.escape(row.reranker)}">scored by '
                    f'{html.escape(model_label(row.reranker))}</span>')
    bar = ""
    if row.score is not None:
        bar = (f'<div class="kb-bar" role="meter" aria-valuemin="0" aria-valuemax="1" '
               f'aria-valuenow="{row.score:.4f}"><div class="kb-fill {cls}" '
               f'style="width: {row.score * 100:.4f}%"></div></div>')
    src = source_line(row)
    source = f'<div class="kb-source">{html.escape(src)}</div>' if src else ""
    reranked = "false" if row.score is None else "true"
    return (f'<div class="kb-card" data-rank="{row.rank}" data-id="{row.id}" data-reranked="{reranked}">'
            f'<div class="kb-head">{"".join(head)}</div>{bar}'
            f'<div class="kb-text">{highlight(row.text, query)}</div>{source}</div>')


def source_file(row: Row, caller: Caller) -> Path | None:
    """The source file of `row` that `caller` may download, or None: not a local file, not theirs to read, or
    reached through a symbolic link (a source is stored as its resolved path, so a link anywhere on it now means
    the file was swapped for one since it was indexed; a link could lead to any file this server may read)."""
    path = Path(row.source) if row.source else None
    if path is None or not caller.may_read(row.acl) or not path.is_absolute():
        return None
    if os.path.realpath(path) != str(path) or not path.is_file():
        return None
    return path


def _download(row: Row, key: str, caller: Caller) -> None:
    path = source_file(row, caller)
    if path is None:
        return
    # O_NOFOLLOW at the read too: a link put in its place after the check above is refused, never served.
    st.download_button(f"Download {path.name}", data=lambda: read_nofollow(path), file_name=path.name,
                       mime=mimetypes.guess_type(path.name)[0] or "application/octet-stream", key=key,
                       on_click="ignore", type="tertiary", icon=":material/download:")


def render_cards(rows: Sequence[Row], query: str, key: str, caller: Caller,
                 judge: Callable[[str, str], None] | None = None) -> None:
    """Cards in the order given; `key` keeps the widgets of different lists apart; a source file can be
    downloaded only by a `caller` who may read it. With `judge`, each card has thumbs up/down; a click calls
    `judge(chunk_id, widget_key)` (the widget's value, 1 up or 0 down, is in `st.session_state[widget_key]`)."""
    for row in rows:
        with st.container(border=True):
            st.html(card_html(row, query))
            left, right = st.columns([1, 5], vertical_alignment="center")
            if judge is not None and row.chunk_id:
                with left:
                    widget = f"{key}-fb-{row.chunk_id}"
                    st.feedback("thumbs", key=widget, on_change=judge, args=(row.chunk_id, widget))
            with right:
                _download(row, key=f"{key}-dl-{row.id}", caller=caller)
