"""Tuning page (admins): see the scores, then pick K, N and the threshold by looking, and save them as the
defaults (recorded in the audit log)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from app.components import control, eval_opener, eval_root, ingest_options, make_search
from app.errors import KbError
from app.quality import tune
from app.quality.evaluate import open_dataset, save_uploaded_set
from app.services import saved_settings
from app.services.request import SearchRequest
from app.ui import history, resources, session
from app.ui.components import controls

SAMPLE_SET = Path(__file__).resolve().parents[3] / "data" / "samples"  # docs/ and queries.jsonl

who = session.current()
session.require_admin(who, "Tuning")
live = resources.live()
svc = live.service
s = live.settings
params = controls.current(who)

st.title("Tuning")
if svc.reranker is None:
    st.error("Tuning needs reranker scores and no reranker is loaded (see the banner above).",
             icon=":material/error:")
    st.stop()


def rule(value: float, title: str, color: str = "#cf222e") -> alt.Chart:
    """A dashed vertical line at `value` (the current threshold or K); `title` is the x axis title it shares."""
    return alt.Chart(pd.DataFrame({"x": [value]})).mark_rule(color=color, strokeDash=[4, 3]).encode(
        x=alt.X("x:Q", title=title))


# ---- the current query ----------------------------------------------------------------------------------------
st.subheader("Scores of the current query")
searcher = controls.searcher(who, params)
last = history.last_search(searcher)
if last is None or svc.index is None:
    st.caption("Run a search first: its score distribution appears here.")
else:
    k = min(params.top_k, tune.MAX_TOP_K)
    with st.spinner("Scoring every recalled passage…"):
        # every passage scored, whatever the latency budget; no one's question, so not recorded
        every = svc.unrecorded().search(SearchRequest.of(last.query, top_k=k, top_n=k, threshold=0.0,
                                                         mode=params.mode, rerank_budget_ms=0), searcher)
    scores = [r.score for r in every.results + every.below_threshold]
    above = sum(x >= params.threshold for x in scores)
    st.caption(f"“{last.query}”: {len(scores)} passages recalled (K = {k}); {above} score at least "
               f"{params.threshold:.2f}, the threshold (dashed line).")
    bars = alt.Chart(tune.histogram(scores)).mark_bar(color="#2da44e").encode(
        x=alt.X("start:Q", bin="binned", title="normalised score", scale=alt.Scale(domain=[0, 1])), x2="end:Q",
        y=alt.Y("count:Q", title="passages"))
    st.altair_chart(bars + rule(params.threshold, "normalised score"), width="stretch")

# ---- a labelled query set -------------------------------------------------------------------------------------
st.subheader("On labelled queries")
source = st.radio("Labelled queries", ["sample set (data/samples)", "upload a set"], horizontal=True,
                  key="kb_tune_source")
folder = SAMPLE_SET if source.startswith("sample") else None
if folder is None:
    up = st.file_uploader("queries.jsonl in the sample-set format, or a BEIR set (corpus.jsonl, queries.jsonl, "
                          "qrels .tsv)", accept_multiple_files=True, type=["jsonl", "tsv"], key="kb_tune_upload")
    if up:
        try:
            folder = save_uploaded_set([(f.name, f.getvalue()) for f in up], s.index_dir.parent / "tuning",
                                       SAMPLE_SET / "docs")
        except ValueError as exc:
            st.error(str(exc))
left, mid, right = st.columns(3)
k_max = left.slider("Largest K to try", 5, tune.MAX_TOP_K, min(tune.MAX_TOP_K, max(params.top_k, 50)), step=5,
                    key="kb_tune_kmax")
n_queries = mid.number_input("Queries to use (0: all)", min_value=0, value=0, step=10, key="kb_tune_nq")
n_timed = right.number_input("Queries timed per K", min_value=1, value=5, step=5, key="kb_tune_timed")

if st.button("Evaluate", type="primary", disabled=folder is None or svc.embedder is None, icon=":material/play_arrow:"):
    try:
        with st.spinner("Building or opening the labelled set's index…"):
            labelled = open_dataset(folder, svc.embedder, eval_root(s), ingest_options(s),
                                    opener=eval_opener(s, svc.vocabulary.analyzer))
        if n_queries:
            labelled = replace(labelled, queries=labelled.queries[:int(n_queries)])
        # the same models over the labelled set's own index
        lsvc = make_search(s, svc.embedder, labelled.index, (svc.reranker, svc.reranker_error))
        bar = st.progress(0.0, text="Searching the labelled queries…")
        collected = tune.collect(lsvc, labelled, k_max, params.mode,
                                 tick=lambda n, total: bar.progress(n / total, text=f"Query {n}/{total}"))
        ks = tune.ks_up_to(k_max)
        bar.progress(1.0, text="Timing each K…")
        timing = tune.time_k(lsvc, labelled, ks, int(n_timed), params.mode)
        st.session_state["kb_tuning"] = {"collected": collected, "ks": ks, "timing": timing,
                                         "name": labelled.name, "top_n": params.top_n,
                                         "sweep": tune.sweep_k(collected, ks, params.top_n),
                                         "mrr": tune.mrr_vs_k(collected, ks)}
        bar.empty()
    except (FileNotFoundError, ValueError) as exc:
        st.error(str(exc))

done = st.session_state.get("kb_tuning")
if done is not None:
    collected = done["collected"]
    _, grades, _ = collected.pairs()
    served = np.asarray([c.score for q in collected.queries for c in q.candidates])
    st.caption(f"{done['name']}: {len(collected.queries)} queries, {served.size} scored passages "
               f"({int((grades > 0).sum())} relevant), reranker {collected.reranker}.")

    curve = tune.threshold_curve(served, grades, thresholds=np.round(np.linspace(0, 1, 101), 2))
    pr = pd.DataFrame([{"threshold": p.threshold, "precision": p.precision, "recall": p.recall} for p in curve])
    long = pr.melt("threshold", var_name="measure", value_name="value").dropna()
    lines = alt.Chart(long).mark_line().encode(x=alt.X("threshold:Q", title="threshold",
                                                       scale=alt.Scale(domain=[0, 1])),
                                               y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1])),
                                               color="measure:N")
    st.markdown("**Precision and recall against the threshold** (recall of the relevant passages recalled)")
    st.altair_chart(lines + rule(params.threshold, "threshold"), width="stretch")
    at = min(curve, key=lambda p: abs(p.threshold - params.threshold))
    c1, c2, c3 = st.columns(3)
    c1.metric(f"Precision at {params.threshold:.2f}", "—" if at.precision is None else f"{at.precision:.3f}")
    c2.metric(f"Recall at {params.threshold:.2f}", f"{at.recall:.3f}")
    c3.metric("Passages shown", f"{at.shown_fraction:.1%}")
    target = st.slider("Target precision", 0.5, 1.0, 0.8, 0.05, key="kb_tune_target")
    rec = tune.recommend_threshold(served, grades, target_precision=target)
    if rec is None:
        st.warning(f"No threshold reaches a precision of {target:.2f} on these queries.")
    else:
        st.info(f"Threshold **{rec.threshold:.2f}** reaches precision {rec.precision:.3f} (95% lower bound "
                f"{rec.precision_low:.3f}) with recall {rec.recall:.3f}.")

        def _use(value: float = round(rec.threshold, 2)) -> None:
            st.session_state["kb_threshold"] = value
            st.session_state["kb_preset"] = controls.preset_of(value)

        st.button("Use this threshold", on_click=_use)

    ks = done["ks"]
    rows = [{"K": p.k, "nDCG@10": p.ndcg, "MRR@10": done["mrr"][p.k], f"hit@{done['top_n']}": p.hit,
             "recall@K": p.recall} for p in done["sweep"]]
    quality = pd.DataFrame(rows).melt("K", var_name="measure", value_name="value")
    st.markdown("**Quality against K** (after reranking the top K)")
    st.altair_chart(alt.Chart(quality).mark_line(point=True).encode(x=alt.X("K:Q", title="K"), y="value:Q",
                                                                    color="measure:N")
                    + rule(params.top_k, "K", color="#57606a"), width="stretch")
    lat = pd.DataFrame([{"K": k, "search p50 (ms)": v["p50_ms"], "rerank p50 (ms)": v["rerank_p50_ms"]}
                        for k, v in done["timing"].items()]).melt("K", var_name="measure", value_name="ms")
    st.markdown("**Latency against K** (median over the timed queries)")
    st.altair_chart(alt.Chart(lat).mark_line(point=True).encode(x="K:Q", y="ms:Q", color="measure:N"),
                    width="stretch")
    st.caption(f"Smallest K within 0.01 of the best hit@{done['top_n']}: {tune.choose_k(done['sweep'])}.")

# ---- save -----------------------------------------------------------------------------------------------------
st.subheader("Save as defaults")
st.caption(f"K = {params.top_k}, N = {params.top_n}, threshold = {params.threshold:.2f} (the sidebar's values) "
           "into the shared database: every API and app serves them within a few seconds (the calibrator saved by "
           "`kb tune --write` stays; a KB_* variable still wins).")
if st.button("Save K, N and threshold as defaults", icon=":material/save:"):
    values = {"top_k": params.top_k, "top_n": params.top_n, "threshold": round(params.threshold, 4)}
    try:
        saved = saved_settings.save(control(s), values, who.who)
    except KbError as exc:
        st.error(exc.message)
    else:
        resources.audit().record(who, "write defaults", version=saved.version, values=values)
        live.check_tuning()  # this app serves them now
        st.success(f"Saved (version {saved.version}): every API and app serves them within a few seconds.")
