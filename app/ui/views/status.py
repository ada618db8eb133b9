"""Status page (admins): where the models run and in which precision, which models and files, the index, and how
fast this session's searches were."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from app.quality.latency import percentiles
from app.settings import config_path
from app.ui import history, resources, session
from app.ui.components import versions
from app.ui.components.status_info import (
    cannot_read,
    device_rows,
    exact_note,
    folder_bytes,
    human_bytes,
    precision,
    reranker_unreadable,
    scoring_rows,
    settings_rows,
)
from rerank.budget import effective_budget_ms
from retrieval.storage import current_version

who = session.current()
session.require_admin(who, "Status")
live = resources.live()
live.check_models()  # a promotion made elsewhere since the last look
svc = live.service
s = live.settings

st.title("Status")
if svc.reranker_error:
    st.error(f"**No reranker serves.** {svc.reranker_error}", icon=":material/error:")
elif svc.reranker is None:
    st.warning("**Serving recall-only results: no reranker** (reranker = none, switched off).",
               icon=":material/warning:")
else:
    st.success(f"Reranker {svc.reranker.name} loaded.", icon=":material/check_circle:")

emb = svc.embedder
choice = svc.reranker.device_choice if svc.reranker is not None else emb.choice
cols = st.columns(4)
cols[0].metric("Device", choice.gpu_name or choice.device.upper(), help=choice.reason)
cols[1].metric("Precision", precision(choice.dtype), help=choice.dtype)
cols[2].metric("Documents", len(svc.index.documents) if svc.index is not None else 0)
cols[3].metric("Passages", len(svc.index.chunks) if svc.index is not None else 0)

st.subheader("Models")
info = emb.info()
models = [{"Role": "embedder", "Model": emb.name, "Requested": emb.requested, "Path": info.get("path"),
           "Device": emb.choice.device, "Precision": precision(emb.choice.dtype),
           "Details": f"{info['dim']}-d, max {info['max_seq_length']} tokens"
                      f"{cannot_read(info.get('unreadable_scripts'))}"}]
if svc.reranker is not None:
    r = svc.reranker.info()
    models.append({"Role": "reranker", "Model": svc.reranker.name, "Requested": svc.reranker_name,
                   "Path": r.path, "Device": r.device, "Precision": precision(r.dtype),
                   "Details": f"{r.architecture or r.kind}, max {r.max_length} tokens, batch {r.batch_size}"
                              f"{exact_note(r)}{cannot_read(reranker_unreadable(svc.reranker))}"})
else:
    # what serves is no model at all: the requested one is named as requested, never as serving
    models.append({"Role": "reranker", "Model": "none (recall-only)", "Requested": svc.reranker_name, "Path": None,
                   "Device": None, "Precision": None,
                   "Details": "not loaded: see above" if svc.reranker_error else "switched off (reranker = none)"})
st.dataframe(models, hide_index=True, width="stretch")

if svc.reranker is not None:
    st.subheader("How the reranker scores")
    st.dataframe(scoring_rows(svc.reranker.info(), effective_budget_ms(svc.defaults.rerank_budget_ms, svc.reranker),
                              svc.defaults.rerank_budget_ms is not None), hide_index=True, width="stretch")

versions.render(live, who, resources.audit())

st.subheader("Hardware")
st.dataframe(device_rows(choice), hide_index=True, width="stretch")

st.subheader("Index")
if svc.index is None:
    st.info(live.index_error or "No index loaded.", icon=":material/info:")
else:
    stats = svc.index.stats()
    version_dir = current_version(svc.index.root) if "collection" not in stats else None
    where = [{"Item": "store", "Value": f"Milvus collection {stats['collection']} (revision {stats['version']}, "
                                        "shared by every replica)"}] if "collection" in stats else \
        [{"Item": "folder", "Value": str(svc.index.root.resolve())}]
    st.dataframe([
        *where,
        {"Item": "version", "Value": stats["version"]},
        {"Item": "documents / passages", "Value": f"{stats['documents']} / {stats['chunks']}"},
        {"Item": "dense index", "Value": f"{stats['dense_index']} ({svc.index.embedder['dim']}-d)"},
        {"Item": "size on disk", "Value": human_bytes(folder_bytes(version_dir)) if version_dir else "—"},
        {"Item": "updated", "Value": datetime.fromtimestamp(stats["updated"]).strftime("%Y-%m-%d %H:%M:%S")},
    ], hide_index=True, width="stretch")

st.subheader("Latency of this session's searches")
lat = history.latencies()
if not lat:
    st.caption("No searches yet in this session.")
else:
    p = percentiles(lat)
    cols = st.columns(4)
    cols[0].metric("Searches", len(lat))
    cols[1].metric("P50", f"{p['p50']:.0f} ms")
    cols[2].metric("P95", f"{p['p95']:.0f} ms")
    cols[3].metric("P99", f"{p['p99']:.0f} ms")
    st.caption("Wall-clock time of each search as this page ran it (recall + rerank; repeated searches come from "
               "the query cache and are fast).")

st.subheader("Settings")
st.caption(f"Config file: {config_path()} ({'found' if config_path().is_file() else 'not present'}); "
           "KB_* environment variables override it.")
st.dataframe(settings_rows(s), hide_index=True, width="stretch")
