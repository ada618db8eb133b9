"""The sidebar's search settings: recall size K, results shown N, threshold with its presets, recall mode,
metadata filters (a multiselect per field with the values present in the documents the caller may read, and an
"updated since" date), and for admins "view as" chosen access groups.

The values live in `st.session_state` under fixed keys, so every page (search, playground, tuning) reads the
same `Params` and moving a slider on one page keeps it on the others. Defaults are the served ones (settings, with
those saved by `kb tune --write` applied). Whose
documents a search may return is never a setting here: it is the signed-in caller's (`searcher`), which an admin
may narrow to check what a group sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import streamlit as st

from app.identity import Caller
from app.services.request import PRESETS, SearchDefaults, SearchRequest
from retrieval.types import MODES

CUSTOM = "custom"


@dataclass(frozen=True)
class Params:
    top_k: int
    top_n: int
    threshold: float
    mode: str
    view_as: tuple[str, ...] | None  # an admin viewing as members of these groups; None: as themselves
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (key, values chosen), "updated" as (">=DATE",)

    def request(self, query: str) -> SearchRequest:
        """The search these settings ask for `query` (KbError validation for an empty query)."""
        return SearchRequest.of(query, top_k=self.top_k, top_n=self.top_n, threshold=self.threshold, mode=self.mode,
                                filters={k: list(v) for k, v in self.filters})


def searcher(caller: Caller, params: Params) -> Caller:
    """Who a search runs as: the caller, or (an admin's "view as") a member of the chosen groups."""
    if params.view_as is None or not caller.admin:
        return caller
    return caller.narrowed(params.view_as)


def preset_of(threshold: float) -> str:
    """The preset whose threshold this is, or "custom"."""
    return next((name for name, t in PRESETS.items() if abs(t - threshold) < 1e-9), CUSTOM)


def _apply_preset() -> None:
    name = st.session_state["kb_preset"]
    if name in PRESETS:
        st.session_state["kb_threshold"] = PRESETS[name]


def _follow_threshold() -> None:
    st.session_state["kb_preset"] = preset_of(st.session_state["kb_threshold"])


def _defaults(d: SearchDefaults) -> None:
    state = st.session_state
    state.setdefault("kb_top_k", d.top_k)
    state.setdefault("kb_top_n", d.top_n)
    state.setdefault("kb_threshold", float(d.threshold))
    state.setdefault("kb_preset", preset_of(d.threshold))
    state.setdefault("kb_mode", d.mode)
    state.setdefault("kb_restrict", False)
    state.setdefault("kb_groups", [])
    state.setdefault("kb_filter_keys", [])


def _filter_widgets(choices: dict[str, list[str]]) -> None:
    state = st.session_state
    state["kb_filter_keys"] = list(choices)
    active = any(state.get(f"kb_filter_{k}") for k in choices) or state.get("kb_filter_since") is not None
    with st.sidebar.expander("Filter documents", expanded=active, icon=":material/filter_alt:"):
        for key, values in choices.items():
            chosen = [v for v in state.get(f"kb_filter_{key}", []) if v in values]  # values gone after a delete
            state[f"kb_filter_{key}"] = chosen
            st.multiselect(key, values, key=f"kb_filter_{key}", placeholder="any")
        st.date_input("Updated on or after", value=None, key="kb_filter_since", min_value=date(1970, 1, 1),
                      help="The date a document states about itself (front-matter or sidecar `updated`), else "
                           "its file's date.")


def sidebar(s: SearchDefaults, caller: Caller, groups_available: list[str],
            filter_choices: dict[str, list[str]] | None = None) -> Params:
    """Draw the controls (starting from the served defaults `s`) and return their values; "view as" only for
    admins. `filter_choices` (field → values present in the documents the caller may read) become the filter
    multiselects."""
    _defaults(s)
    side = st.sidebar
    side.subheader("Search settings")
    side.slider("Recall size K", min_value=1, max_value=max(200, s.top_k), step=1, key="kb_top_k",
                help="How many passages recall fetches for the reranker to score. More finds more, costs more.")
    side.slider("Results shown N", min_value=1, max_value=max(20, s.top_n), step=1, key="kb_top_n",
                help="How many results above the threshold are shown.")
    side.radio("Threshold preset", [*PRESETS, CUSTOM], key="kb_preset", on_change=_apply_preset, horizontal=True,
               format_func=lambda p: p if p == CUSTOM else f"{p} {PRESETS[p]:g}",
               help="strict shows only confident answers; recall also shows borderline ones.")
    side.slider("Threshold", min_value=0.0, max_value=1.0, step=0.01, key="kb_threshold",
                on_change=_follow_threshold,
                help="Results with a normalised reranker score below this are hidden behind an expander.")
    side.selectbox("Recall mode", MODES, key="kb_mode",
                   help="hybrid: dense embeddings and BM25 fused; dense or lexical: one leg only.")
    _filter_widgets(filter_choices or {})
    if caller.admin:
        side.toggle("View as members of access groups", key="kb_restrict",
                    help="Off: every document (you are an admin). On: what a member of the groups chosen below "
                         "sees — public documents plus those groups'.")
        if st.session_state["kb_restrict"]:
            options = sorted(set(groups_available) | set(st.session_state["kb_groups"]))
            side.multiselect("Access groups", options, key="kb_groups", placeholder="none: public documents only")
    return current(caller)


def current(caller: Caller) -> Params:
    """The values the sidebar holds now (the sidebar must have been drawn in this run)."""
    state = st.session_state
    view_as = tuple(state["kb_groups"]) if caller.admin and state["kb_restrict"] else None
    filters = [(k, tuple(state[f"kb_filter_{k}"])) for k in state.get("kb_filter_keys", [])
               if state.get(f"kb_filter_{k}")]
    since = state.get("kb_filter_since")
    if since is not None:
        filters.append(("updated", (f">={since.isoformat()}",)))
    return Params(int(state["kb_top_k"]), int(state["kb_top_n"]), float(state["kb_threshold"]), state["kb_mode"],
                  view_as, tuple(filters))
