"""The warnings at the top of every page: a person must never mistake recall-only results for reranked ones."""

from __future__ import annotations

import streamlit as st

from rerank.factory import is_disabled

from .resources import Engine


def show(engine: Engine) -> None:
    svc = engine.service
    if svc.reranker_error:
        st.error(f"**Reranker not loaded — results are recall-only, without relevance scores.** "
                 f"{svc.reranker_error}. Give a local cross-encoder folder with `kb ui --reranker models/<name>` "
                 f"(or KB_RERANKER), or download {svc.reranker_name} on a connected machine.",
                 icon=":material/error:")
    elif is_disabled(svc.reranker_name):
        st.warning("**Reranker switched off** (reranker = none): results are in recall order, without relevance "
                   "scores.", icon=":material/warning:")
    if svc.embedder is not None and svc.embedder.warning:
        st.warning(svc.embedder.warning, icon=":material/warning:")
