"""Raw data page: every scored passage of the last search and the last playground run, sortable, as CSV."""

from __future__ import annotations

import streamlit as st

from app.ui import history, session
from app.ui.components import controls, rows
from app.ui.components.tables import show_table

st.title("Raw data")
st.caption("ID is the input order (the position in the recall list, or the candidate's line in the playground); "
           "click a column header to sort.")

who = session.current()
params = controls.current(who)
last = history.last_search(controls.searcher(who, params))
played = st.session_state.get("kb_playground")
if last is None and played is None:
    st.info("Nothing yet: run a search (or the rerank playground) first.", icon=":material/info:")
    st.stop()

if last is not None:
    st.subheader(f"Search: {last.query}")
    show_table(rows.from_search(last.result), key="raw-search", file_name="search-results.csv")
if played is not None:
    st.subheader(f"Playground: {played['query']}")
    show_table(rows.from_scored(played["scored"], params.threshold, params.top_n, played.get("reranker")),
               key="raw-playground", file_name="playground-results.csv")
