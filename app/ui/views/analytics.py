"""Analytics page (admins): what employees ask, how fast it answers, what goes unanswered (the content gaps) and
which documents people find useful, from the events store; and how each best bet fares (shown, thumbs)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app.components import best_bets_store
from app.ui import resources, session

who = session.current()
session.require_admin(who, "Analytics")
live = resources.live()
svc = live.service

st.title("Analytics")
if svc.events is None:
    st.info("Searches are not recorded: the setting `events` is off, or the events database could not be opened "
            "(see the server log).", icon=":material/info:")
    st.stop()
days = st.slider("Days", min_value=1, max_value=365, value=30, key="kb_an_days")
report = svc.events.analytics(days)
index = svc.index


def _doc(doc_id: str) -> str:
    rec = index.documents.get(doc_id) if index is not None else None
    return (rec.title or rec.source) if rec is not None else f"{doc_id} (no longer indexed)"


lat, fb = report["latency_ms"], report["feedback"]
# one short figure per metric: two in one ("793 / 1340 ms") were cut off at laptop widths
cols = st.columns(6)
cols[0].metric("Searches", report["searches"])
cols[1].metric("Latency P50", f"{lat['p50']:.0f} ms" if lat else "—", help="median wall-clock time of a search")
cols[2].metric("Latency P95", f"{lat['p95']:.0f} ms" if lat else "—", help="95 in 100 searches took at most this")
cols[3].metric("No answer", "—" if report["no_answer_share"] is None else f"{report['no_answer_share']:.0%}",
               help="searches where no result passed the threshold")
cols[4].metric("Thumbs up / down", f"{fb['up']} / {fb['down']}")
cols[5].metric("'None answers'", fb["none_answers"])
if not report["searches"]:
    st.caption(f"No searches in the last {days} days.")
    st.stop()

per_day = pd.DataFrame(report["per_day"])
st.markdown("**Searches per day** (red: no result above the threshold)")
st.altair_chart(alt.Chart(per_day.melt("day", ["searches", "no_answer"], "kind", "count")).mark_bar().encode(
    x=alt.X("day:T", title="day"), y=alt.Y("count:Q", title="searches", stack=None),
    color=alt.Color("kind:N", scale=alt.Scale(domain=["searches", "no_answer"], range=["#0969da", "#cf222e"]))),
    width="stretch")


def table(title: str, rows: list[dict], file_name: str, caption: str) -> None:
    st.subheader(title)
    st.caption(caption)
    if not rows:
        st.caption("None.")
        return
    frame = pd.DataFrame(rows)
    st.dataframe(frame, hide_index=True, width="stretch")
    st.download_button("Download CSV", data=frame.to_csv(index=False).encode("utf-8-sig"), file_name=file_name,
                       mime="text/csv", key=f"kb-an-{file_name}", on_click="ignore", icon=":material/download:")


table("Content gaps: no answer", report["no_answer_queries"], "no-answer-queries.csv",
      "Questions (grouped by their normalised text) where nothing passed the threshold: documents to write.")
table("Content gaps: weak answers", report["low_score_queries"], "low-score-queries.csv",
      "Questions answered, but with no result in the strong band (score > 0.7).")
table("Top queries", report["top_queries"], "top-queries.csv", "What people ask most.")
table("Thumbs per document", [{"document": _doc(d["doc_id"]), **d} for d in report["per_document"]],
      "thumbs-per-document.csv", "Judgments on results, by the document they came from.")
table("Per reranker model", report["by_reranker"], "per-reranker.csv",
      "Searches, answers and judgments by the model that scored them: a canary against the serving model.")
phrases = {b.bet_id: " | ".join(b.phrases) for b in best_bets_store(live.settings).load().bets}
table("Best bets", [{"label": b["label"], "phrases": phrases.get(b["bet_id"], "(removed)"),
                     "document": _doc(b["doc_id"]), "shown": b["shown"], "up": b["up"], "down": b["down"],
                     "bet_id": b["bet_id"]} for b in report["best_bets"]], "best-bets.csv",
      "Passages pinned on the Vocabulary page: how many searches showed each, and its thumbs there.")
if report["events"]["dropped"] or report["events"]["write_errors"]:
    st.warning(f"{report['events']['dropped']} searches were dropped (queue full) and "
               f"{report['events']['write_errors']} could not be written since this app started.")
