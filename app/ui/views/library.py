"""Library page (admins): upload documents into the index, see what it holds, delete documents. Uploads and
deletes go through the same `Library` service as `kb ingest` and the API, and are recorded in the audit log."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.services.library import document_rows, parse_groups
from app.ui import resources, session
from ingest.load import SUPPORTED_SUFFIXES
from retrieval.index import IndexMismatch, IndexNotFound
from retrieval.storage import IndexLocked

who = session.current()
session.require_admin(who, "Library")
live = resources.live()
svc = live.service
s = live.settings
library = live.library()

st.title("Library")
st.caption(f"Index {s.index_dir} · uploaded files are kept in {s.upload_dir}, one folder per set of access "
           "groups (the same name for other groups is another document) · supported: "
           f"{', '.join(sorted(SUPPORTED_SUFFIXES))} (up to {s.max_file_mb:g} MB each)")

# ---- upload ------------------------------------------------------------------------------------------------
with st.form("kb-upload", clear_on_submit=True):
    files = st.file_uploader("Add or update documents", accept_multiple_files=True, key="kb_upload")
    groups_text = st.text_input("Access groups for these files", placeholder="e.g. hr, finance — empty: everyone",
                                help="Only people searching as a member of one of these groups will see them.")
    submitted = st.form_submit_button("Ingest", type="primary", icon=":material/upload:")

if submitted and files:
    bar = st.progress(0.0, text="Saving files…")

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "read":
            bar.progress(done / max(total, 1) * 0.5, text=f"Reading and chunking {done}/{total} files…")
        else:
            bar.progress(0.9, text="Embedding is done; publishing the new index version…")

    try:
        with st.spinner("Embedding the new passages…"):
            report = library.ingest_uploads([(f.name, f.getvalue()) for f in files], parse_groups(groups_text),
                                            progress=progress)
    except (IndexLocked, IndexMismatch) as exc:
        bar.empty()
        st.error(str(exc))
    else:
        bar.progress(1.0, text=f"Done in {report.seconds:.1f} s")
        resources.audit().record(who, "upload", files=[f.name for f in files], groups_given=parse_groups(groups_text),
                                 added=[Path(x).name for x in report.added],
                                 updated=[Path(x).name for x in report.updated], skipped=len(report.skipped))
        live.reload_index()
        status = st.session_state.setdefault("kb_doc_status", {})
        status.update({src: "added" for src in report.added})
        status.update({src: "updated" for src in report.updated})
        st.session_state["kb_last_ingest"] = report
elif submitted:
    st.warning("Choose one or more files first.")

report = st.session_state.get("kb_last_ingest")
if report is not None:
    summary = (f"Last upload: {len(report.added)} added, {len(report.updated)} updated, {report.unchanged} "
               f"unchanged, {len(report.skipped)} skipped; {report.chunks_written} passages embedded.")
    (st.warning if report.skipped else st.success)(summary)
    if report.skipped:
        st.markdown("**Skipped files**")
        st.dataframe([{"File": Path(f).name, "Reason": why} for f, why in report.skipped], hide_index=True,
                     width="stretch")
    if report.pages_not_read:  # scanned pages OCR could not read; the rest of each file is indexed
        st.markdown("**Pages not read**")
        st.dataframe([{"File": Path(f).name, "Page": page, "Reason": why} for f, page, why in report.pages_not_read],
                     hide_index=True, width="stretch")

# ---- documents ---------------------------------------------------------------------------------------------
svc = live.service
if svc.index is None:
    st.info(live.index_error or "No index yet.", icon=":material/info:")
    st.stop()
docs = document_rows(svc.index, who, st.session_state.get("kb_doc_status"))
st.subheader(f"{len(docs)} documents · {len(svc.index.chunks)} passages")
st.dataframe(docs, hide_index=True, width="stretch", column_order=[
    "Title", "File", "Format", "Chunks", "Access", "Ingested", "Status"])

with st.expander("Delete documents"):
    labels = {d["doc_id"]: f"{d['Title'] or d['File']} ({d['File']})" for d in docs}
    chosen = st.multiselect("Documents to delete", list(labels), format_func=labels.get, key="kb_delete")
    if st.button("Delete", type="primary", disabled=not chosen, icon=":material/delete:"):
        try:
            with st.spinner("Deleting and publishing a new index version…"):
                removed = library.delete(chosen)
        except (IndexLocked, IndexNotFound) as exc:
            st.error(str(exc))
        else:
            resources.audit().record(who, "delete", doc_ids=chosen, sources=removed)
            live.reload_index()
            st.session_state.pop("kb_delete", None)
            st.toast(f"Deleted {len(removed)} document{'s' * (len(removed) != 1)}")
            st.rerun()
