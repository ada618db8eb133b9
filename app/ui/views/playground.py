"""Rerank playground: a query and candidates (one per line), scored by the loaded reranker. No index needed."""

from __future__ import annotations

import streamlit as st

from app.errors import KbError
from app.services.limits import RerankLimits
from app.settings import get_settings
from app.ui import resources, session
from app.ui.components import controls, rows
from app.ui.components.cards import render_cards
from app.ui.components.tables import show_table
from rerank.rank import rerank

EXAMPLE_QUERY = "试用期员工离职需要提前几天通知？"
EXAMPLE_CANDIDATES = "\n".join([
    "试用期员工主动离职的，应当提前三日通知公司。",
    "正式员工主动辞职的，应当提前三十日以书面形式通知公司。",
    "Employees get twenty days of annual leave a year.",
    "To reset a forgotten VPN token, open the self-service portal and choose Reset.",
    "员工每年可以享受带薪年假，天数按工龄计算。",
])

svc = resources.live().service
who = session.current()
params = controls.current(who)

st.title("Rerank playground")
st.caption("Score any passages against a question with the loaded reranker, as in the reranker demos: one "
           "candidate per line. The index is not used.")
if svc.reranker is None:
    st.error("The playground needs a reranker and none is loaded (see the banner above).", icon=":material/error:")
    st.stop()

st.session_state.setdefault("kb_pg_query", EXAMPLE_QUERY)
st.session_state.setdefault("kb_pg_candidates", EXAMPLE_CANDIDATES)
with st.form("kb-playground", border=False):
    st.text_input("Query", key="kb_pg_query")
    st.text_area("Candidates, one per line", key="kb_pg_candidates", height=180)
    submitted = st.form_submit_button("Rerank", type="primary", icon=":material/sort:")

limits = RerankLimits.of(get_settings())
st.caption(f"At most {limits.max_documents} candidates and {limits.max_text_chars:,} characters of them, as for the "
           "API's /rerank.")
if submitted:
    query = st.session_state["kb_pg_query"].strip()
    candidates = [line.strip() for line in st.session_state["kb_pg_candidates"].splitlines() if line.strip()]
    if not query:
        st.error("The query is empty: type a question.")
    elif not candidates:
        st.error("No candidates: write one passage per line.")
    else:
        # The same limits and the same admission as POST /rerank: the reranker is shared with every other
        # session's searches, so one person's paste must neither hold it for minutes nor queue without bound.
        try:
            limits.check(query, candidates)
            with resources.admission().slot(), st.spinner(f"Scoring {len(candidates)} candidates…"):
                scored = rerank(query, candidates, svc.reranker)
        except KbError as exc:
            st.error(exc.message, icon=":material/block:")
        else:
            st.session_state["kb_playground"] = {"query": query, "scored": scored, "reranker": svc.reranker.name}

played = st.session_state.get("kb_playground")
if played is not None:
    all_rows = rows.from_scored(played["scored"], params.threshold, params.top_n, played.get("reranker"))
    shown = [r for r in all_rows if r.shown]
    hidden = [r for r in all_rows if not r.shown]
    st.markdown(f"**{len(shown)} of {len(all_rows)} candidates** shown (score ≥ {params.threshold:.2f}, "
                f"at most {params.top_n}) — reranker {svc.reranker.name}")
    render_cards(shown, played["query"], key="pg", caller=who)
    if hidden:
        below = sum(r.score < params.threshold for r in hidden)
        label = f"{below} below the threshold {params.threshold:.2f}"
        if below < len(hidden):
            label += f", {len(hidden) - below} more past the top {params.top_n}"
        with st.expander(label):
            render_cards(hidden, played["query"], key="pg-hidden", caller=who)
    st.subheader("Table")
    show_table(all_rows, key="pg-table", file_name="playground-results.csv")
