"""The Status page's "Reranker versions" section (admins): what serves, the canary and shadow candidates, the
figures per model, the history, and promote / roll back / canary / shadow, which run the same code as
`kb models promote` and friends (`app.services.promotion`) and switch this app at once."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from app.components import load_unshared, read_rollout, reranker_options, rollout_store
from app.errors import KbError
from app.identity import Caller
from app.services import promotion
from app.services.audit import AuditLog
from app.services.live import LiveSearch
from rerank.validation.gate import GateLimits


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")


def _figures(live: LiveSearch) -> None:
    snap = live.stats.snapshot()
    if snap["models"]:
        st.dataframe([{"Model": m["model"], "Role": m["role"], "Searches": m["searches"],
                       "Latency P50 (ms)": m["latency_ms"]["p50"], "Latency P95 (ms)": m["latency_ms"]["p95"],
                       "Mean score": m["score"]["mean"]} for m in snap["models"]], hide_index=True, width="stretch")
    else:
        st.caption("No reranked searches in this app process yet.")
    if snap["shadow"]:
        st.markdown("**Shadow against the serving model** (per search, averaged)")
        st.dataframe([{"Serving": x["serving"], "Candidate": x["candidate"], "Searches": x["searches"],
                       "Top-5 overlap": x["top5_overlap"], "Rank correlation": x["rank_correlation"],
                       "Score shift": x["score_shift"]} for x in snap["shadow"]], hide_index=True, width="stretch")
        if snap["shadow_dropped"]:
            st.caption(f"{snap['shadow_dropped']} searches were not shadow-scored (the shadow fell behind).")


FLASH = "kb-versions-flash"


def _act(live: LiveSearch, done: str, action, *args, **kwargs):
    """Run one change. Done: make this app follow it now (other processes follow within `models_reload_s`) and
    show the page again with `done` said. Refused: say why, on this run of the page."""
    try:
        result = action(*args, **kwargs)
    except KbError as exc:
        st.error(exc.message, icon=":material/error:")
        return None
    if getattr(result, "state", result) is None:  # a promotion its gate refused: nothing changed
        return result
    live.reload_models()
    st.session_state[FLASH] = done
    st.rerun()


def render(live: LiveSearch, who: Caller, audit: AuditLog) -> None:
    s = live.settings
    svc = live.service
    store = rollout_store(s)
    state, error = read_rollout(s)
    st.subheader("Reranker versions")
    if FLASH in st.session_state:
        st.success(st.session_state.pop(FLASH), icon=":material/check_circle:")
    for problem in (error, live.models_error):
        if problem:
            st.error(problem, icon=":material/error:")
    cur = state.current
    chosen = f"promoted {_when(cur.at)} by {cur.by}" if cur else "the `reranker` setting"
    if svc.reranker is not None:
        st.markdown(f"**Serving:** `{svc.reranker_name}` — {chosen}")
    elif svc.reranker_error:  # chosen, yet what serves is recall order: never named as if it served
        st.markdown(f"**Serving:** no reranker, recall-only results — `{svc.reranker_name}` ({chosen}) could not "
                    "be loaded (why: at the top of this page)")
    else:
        st.markdown(f"**Serving:** no reranker, recall-only results — switched off ({chosen}: `none`)")
    if svc.canary is not None:
        st.markdown(f"**Canary:** `{svc.canary.name}` on {svc.canary_share:.0%} of searches")
    if svc.shadow is not None:
        st.markdown(f"**Shadow:** `{svc.shadow.name}` scores every search in the background")
    _figures(live)
    if state.history:
        with st.expander(f"History ({len(state.history)} changes)"):
            st.dataframe([{"When": _when(h["at"]), "Action": h["action"], "Model": h.get("model"),
                           "Previous": h.get("previous"), "By": h["by"],
                           "Passed gate": (h.get("checks") or {}).get("passed")} for h in reversed(state.history)],
                         hide_index=True, width="stretch")
    options = reranker_options(s).replace(device="cpu", dtype="auto", backend="torch", quantize=False)
    promote_tab, canary_tab, shadow_tab = st.tabs(["Promote / roll back", "Canary", "Shadow"])
    with promote_tab, st.form("kb-promote"):
        path = st.text_input("Model folder", placeholder="models/reranker_zh_v2", key="kb-promote-path")
        golden = st.text_input("Golden pairs (JSONL, optional)", key="kb-promote-golden")
        limits = GateLimits()
        left, right = st.columns(2)
        overlap = left.number_input("Least top-5 overlap with the serving model", 0.0, 1.0, limits.min_top_overlap,
                                    0.05, key="kb-promote-overlap")
        shift = right.number_input("Largest mean score shift", 0.0, 1.0, limits.max_score_shift, 0.05,
                                   key="kb-promote-shift")
        if st.form_submit_button("Check and promote", icon=":material/upgrade:") and path.strip():
            with st.spinner("Checking the model against the serving one…"):
                result = _act(live, f"{path.strip()} passed its checks and now serves.", promotion.promote, store,
                              path.strip(), s.reranker, who, audit, golden=golden.strip() or None, options=options,
                              limits=GateLimits(min_top_overlap=overlap, max_score_shift=shift), load=load_unshared)
            if result is not None:  # refused by the gate
                st.error("Not promoted: " + "; ".join(result.report.reasons), icon=":material/block:")
                st.json(result.report.summary(), expanded=False)
    if cur is not None and promote_tab.button("Roll back to the previous model", icon=":material/undo:"):
        _act(live, "Rolled back: the previous model serves again.", promotion.rollback, store, s.reranker, who,
             audit)
    with canary_tab:
        if svc.canary is not None and st.button("End the canary", icon=":material/stop_circle:"):
            _act(live, "Canary ended.", promotion.stop_canary, store, who, audit)
        with st.form("kb-canary"):
            path = st.text_input("Candidate folder", key="kb-canary-path")
            share = st.slider("Share of searches", 0.05, 0.95, 0.1, 0.05, key="kb-canary-share")
            if st.form_submit_button("Start the canary") and path.strip():
                _act(live, f"Canary started on {share:.0%} of searches.", promotion.start_canary, store,
                     path.strip(), share, s.reranker, who, audit, options)
    with shadow_tab:
        if svc.shadow is not None and st.button("End the shadow", icon=":material/stop_circle:"):
            _act(live, "Shadow ended.", promotion.stop_shadow, store, who, audit)
        with st.form("kb-shadow"):
            path = st.text_input("Candidate folder", key="kb-shadow-path")
            if st.form_submit_button("Start the shadow") and path.strip():
                _act(live, "Shadow started.", promotion.start_shadow, store, path.strip(), s.reranker, who, audit,
                     options)
