"""The warnings at the top of every page: a person must never mistake recall-only results for reranked ones."""

from __future__ import annotations

import streamlit as st

from app.services.search import SearchService
from rerank.engines.factory import is_disabled


def show(service: SearchService) -> None:
    if service.reranker_error:
        st.error(f"**Reranker not loaded — results are recall-only, without relevance scores.** "
                 f"{service.reranker_error}. Give a local cross-encoder folder with `kb ui --reranker models/<name>` "
                 f"(or KB_RERANKER), or download {service.reranker_name} on a connected machine.",
                 icon=":material/error:")
    elif is_disabled(service.reranker_name):
        st.warning("**Reranker switched off** (reranker = none): results are in recall order, without relevance "
                   "scores.", icon=":material/warning:")
    if service.embedder.warning:
        st.warning(service.embedder.warning, icon=":material/warning:")
