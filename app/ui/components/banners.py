"""The status line at the top of every page: one compact line (the mode, the models serving, what is missing) that
opens into the details and the fix. It replaces a stack of boxes that pushed the search box below the fold; the
recall-only state also shows on the results themselves (their summary line and cards say "no reranker score"), so
a person never mistakes recall order for reranked results."""

from __future__ import annotations

import streamlit as st

from app.identity import Caller
from app.services.search import SearchService
from app.ui.components.cards import model_label
from rerank.engines.factory import is_disabled

OPEN_MODE = ("**Open mode: everyone who can open this page sees every document.** For one person on one machine "
             "(`kb demo`). Set `KB_AUTH_PROVIDER_URL` (docs/SECURITY.md) before sharing it.")


def summary(service: SearchService, who: Caller) -> tuple[str, list[str]]:
    """(the line, the details under it): each fact said once, the line short enough for one row on a laptop. The
    details are Markdown paragraphs, each with its fix where there is one; empty when all is well."""
    line, details = [], []
    if who.via == "open":
        line.append("Open mode: everyone sees every document")
        details.append(OPEN_MODE)
    if service.reranker is not None:
        line.append(f"reranked by {model_label(service.reranker.name)}")
    elif service.reranker_error:
        line.append("recall-only: reranker not loaded")
        # the reason says "serving recall-only results" and how to get the model where that is the fix
        details.append(f"{service.reranker_error}. **Or** serve a local cross-encoder folder: "
                       "`kb ui --reranker models/<name>` (or `KB_RERANKER`).")
    elif is_disabled(service.reranker_name):
        line.append("recall-only: reranker off")
        details.append("**Reranker switched off** (reranker = none): results are in recall order, without "
                       "relevance scores.")
    emb = service.embedder
    name = model_label(emb.name).removeprefix("packaged:")
    if emb.warning:
        line.append(f"embedder {name} (stand-in for {emb.requested})")
        details.append(emb.warning)
    else:
        line.append(f"embedder {name}")
    text = " · ".join(line)
    return text[:1].upper() + text[1:], details


def show(service: SearchService, who: Caller) -> None:
    """The line as a collapsed expander (its label) holding the details; a plain caption when nothing is amiss."""
    line, details = summary(service, who)
    if not details:
        st.caption(f":material/check_circle: {line}")
        return
    with st.expander(line, icon=":material/warning:"):
        for paragraph in details:
            st.markdown(paragraph)
