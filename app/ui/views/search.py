"""Search page: a question in, the passages that answer it out, one card per result with its score."""

from __future__ import annotations

import time

import streamlit as st

from app.errors import KbError
from app.ui import history, resources, session
from app.ui.components import controls, rows
from app.ui.components.cards import render_cards
from app.ui.components.pinned import render_pinned

EXAMPLES = ["试用期员工离职需要办理哪些手续？", "How do I reset my VPN token?", "年假可以休几天",
            "expense claim deadline"]


def _example(text: str) -> None:
    st.session_state["kb_query"] = text


live = resources.live()
svc = live.service
who = session.current()
params = controls.current(who)
searcher = controls.searcher(who, params)

st.title("Search the knowledge base")
if svc.index is None:
    st.info(live.index_error or "No index loaded.", icon=":material/info:")
    st.stop()

with st.form("kb-search", border=False):
    left, right = st.columns([6, 1], vertical_alignment="bottom")
    left.text_input("Question", key="kb_query", placeholder="试用期员工离职需要办理哪些手续？ · How do I reset my VPN "
                    "token?")
    right.form_submit_button("Search", type="primary", icon=":material/search:", width="stretch")
cols = st.columns(len(EXAMPLES))
for col, text in zip(cols, EXAMPLES):
    col.button(text, on_click=_example, args=(text,), type="tertiary", key=f"kb-ex-{text}")

query = st.session_state.get("kb_query", "").strip()
if not query:
    visible = sum(searcher.may_read(rec.acl) for rec in svc.index.documents.values())
    st.caption(f"{visible} documents you may read are indexed. Ask a question in Chinese or English.")
    st.stop()


def _summary(res, threshold: float) -> str:
    """The line above the cards: how many, and how many of the recalled passages the reranker scored."""
    n = len(res.results)
    if res.preview:
        return f"**{n} passage{'s' * (n != 1)} in recall order** (of {res.candidates} recalled; reranking…)"
    if res.reranker and res.reranked < res.candidates:  # the latency budget cut reranking short
        unscored = sum(r.score is None for r in res.results)
        return (f"**{n} result{'s' * (n != 1)}**: {n - unscored} with a score of at least {threshold:.2f}, then "
                f"{unscored} in recall order (not reranked) — reranked {res.reranked} of {res.candidates} passages "
                "recalled within the latency budget")
    if res.reranker:
        return (f"**{n} result{'s' * (n != 1)}** with a score of at least {threshold:.2f} — reranked "
                f"{res.reranked} of {res.candidates} passages recalled")
    return f"**{n} passages in recall order** (no reranker: no relevance scores)"


def _show_preview(res) -> None:
    render_pinned(res.pinned, query, key="search-preview-pinned")
    st.markdown(_summary(res, params.threshold))
    render_cards(rows.from_search(res), query, key="search-preview", caller=searcher)


# Reranking K passages on a CPU takes seconds: the recall stage's candidates are shown at once and replaced in the
# same place when the reranker has ranked those same candidates (one recall per question). A search answered at
# once (no reranker, this session's last search, the query cache) shows no preview, so nothing flashes.
working = st.empty()
area = st.empty()
try:
    plan = svc.plan(params.request(query), searcher)
    found = history.reusable(plan)
    if found is None:
        t0 = time.perf_counter()
        res = svc.cached(plan)
        if res is None:
            with st.spinner("Searching…"):
                recalled = svc.recall(plan)
            if plan.reranker is not None:
                with area.container():
                    _show_preview(svc.preview(plan, recalled))
                budget = plan.request.rerank_budget_ms
                with working.container(), st.spinner(
                        f"Reranking up to {len(recalled.hits)} candidates"
                        + (f" within {budget} ms" if budget else "") + "…", show_time=True):
                    res = svc.rank(plan, recalled)
            else:
                res = svc.rank(plan, recalled)
        found = history.remember(plan, res, (time.perf_counter() - t0) * 1000)
except KbError as exc:
    area.empty()
    st.error(str(exc))
    st.stop()
res = found.result


def _judge(chunk_id: str | None, widget: str | None = None) -> None:
    """Record a thumbs up/down on a shown result (or, without a chunk, "none of these answers")."""
    useful = widget is not None and st.session_state.get(widget) == 1
    if widget is not None and st.session_state.get(widget) is None:
        return  # the thumb was taken back: nothing to record
    try:
        svc.events.record_feedback(who, res.query_id, chunk_id, useful)
    except KbError as exc:
        st.toast(f"Not recorded: {exc.message}", icon=":material/error:")
    else:
        st.toast("Thank you: your judgment helps tune the search.", icon=":material/thumb_up:")


area.empty()  # the preview goes; the reranked results take its place
with st.container():
    for warning in res.warnings:
        if warning not in (svc.reranker_error, svc.embedder.warning):  # those have their banner already
            st.warning(warning, icon=":material/info:")

    all_rows = rows.from_search(res)
    shown = [r for r in all_rows if r.shown]
    # the expander holds what the threshold hid; results cut by N are in the raw data table
    hidden = [r for r in all_rows if not r.shown and r.score is not None and r.score < params.threshold]
    judge = _judge if svc.events is not None else None
    render_pinned(res.pinned, query, key=f"search-{res.query_id}", judge=judge)  # best bets: above, labelled
    st.markdown(_summary(res, params.threshold))
    if res.also_searched:
        st.caption("Also searched: " + ", ".join(res.also_searched) + " (synonyms of your words)")
    if params.filters:
        st.caption("Only documents with " + "; ".join(f"{k} {' or '.join(v)}" for k, v in params.filters)
                   + " (sidebar filters)")
    if not shown:
        st.info("Nothing scored above the threshold. Lower it in the sidebar, or look below the threshold.")

    render_cards(shown, query, key=f"search-{res.query_id}", caller=searcher, judge=judge)
    if judge is not None and (shown or hidden or res.pinned):
        st.button("None of these answers my question", icon=":material/thumb_down:", on_click=_judge,
                  args=(None,), key=f"kb-none-{res.query_id}", type="tertiary")
    if hidden:
        with st.expander(f"{len(hidden)} result{'s' * (len(hidden) != 1)} below the threshold "
                         f"{params.threshold:.2f}"):
            render_cards(hidden, query, key="search-hidden", caller=searcher)

    t = res.timings_ms  # "(cached)" for admins: the cache is shared, it tells that someone asked before
    st.caption(f"Timings — embed {t['embed']:.0f} ms · recall {t['recall']:.0f} ms · rerank {t['rerank']:.0f} ms · "
               f"total {t['total']:.0f} ms{' (cached)' if who.admin and getattr(res, 'cached', False) else ''} · "
               f"device {res.device}, {res.dtype} · embedder {res.embedder} · reranker {res.reranker or 'none'}")
