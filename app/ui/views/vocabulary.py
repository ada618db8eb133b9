"""Vocabulary page (admins): edit the synonyms and the user dictionary, and see how a question is read.

Saving writes the text whole into the shared database (`app.services.vocabulary`), records it in the audit log and
makes this app use it at once; every running API and app, on any machine, sees the change within
`vocabulary_reload_s` seconds. A save is refused when someone else saved the same words since this page showed
them (nothing is lost: the page shows theirs). A line the reader cannot use is listed with its number and skipped;
the rest applies.
"""

from __future__ import annotations

import streamlit as st

from app.components import apply_user_dictionary, vocabulary_store
from app.errors import KbError
from app.ui import resources, session
from retrieval.catalog import WriterBusy

who = session.current()
session.require_admin(who, "Vocabulary")
live = resources.live()
s = live.settings
store = vocabulary_store(s)

st.title("Vocabulary")
st.caption(f"Kept in {store.control.where}, shared by every API and app, which reread them within "
           f"{s.vocabulary_reload_s:g} s of a change")
live.check_vocabulary()  # saved by another process since the last look
vocab = live.vocabulary
for problem in vocab.problems:
    st.warning(problem, icon=":material/warning:")

TABS = {
    "synonyms": ("Synonyms",
                 "One set a line, terms separated by commas, any language; a term may be several words. A search "
                 "for one term also searches the others (weighted below the words typed) and says so.",
                 "年假, 年休假, annual leave\nWFH, 远程办公, work from home"),
    "user_dict": ("User dictionary",
                  "jieba's format: `word [frequency] [tag]` a line, for names and terms jieba would split "
                  "(钉钉, 飞书审批). Saving analyses BM25 again from the stored text (no re-embedding).",
                  "钉钉\n飞书审批 10 n"),
}


def _save(kind: str, text: str, version: int | None) -> None:
    try:  # on top of the version shown: someone else's save meanwhile is refused, never overwritten
        entry, problems = store.save(kind, text, who.who, expect=version)
    except KbError as exc:
        st.session_state["kb_voc_refused"] = (kind, exc.message)
        return
    if kind == "user_dict" and live.settings.vector_store == "milvus":
        # a corpus in Milvus holds its BM25 terms: made again now (a new collection), then served by every replica
        with st.spinner("Making the corpus's BM25 terms again with the new dictionary (no re-embedding)…"):
            try:
                apply_user_dictionary(live.settings)
            except WriterBusy:
                st.session_state["kb_voc_refused"] = (kind, "Saved. An ingest is running: it applies the new "
                                                            "dictionary to the corpus when it publishes.")
        live.check_index()
    counts = live.reload_vocabulary().vocabulary.counts
    resources.audit().record(who, f"edit {kind}", version=entry.version, lines=len(text.splitlines()),
                             skipped=len(problems))
    st.session_state["kb_voc_saved"] = (kind, problems, counts)


def _editor(kind: str, title: str, help_text: str, example: str) -> None:
    st.caption(help_text)
    text_now, version = store.text(kind)  # the editor starts again from what is stored whenever it changes
    with st.form(f"kb-voc-{kind}"):
        text = st.text_area(title, text_now, height=260, placeholder=example, key=f"kb_voc_{kind}_{version}")
        if st.form_submit_button("Save", type="primary", icon=":material/save:"):
            _save(kind, text, version)
            st.rerun()
    refused = st.session_state.get("kb_voc_refused")
    if refused and refused[0] == kind:
        del st.session_state["kb_voc_refused"]  # said once
        st.error(refused[1], icon=":material/error:")
    saved = st.session_state.get("kb_voc_saved")
    if saved and saved[0] == kind:
        _, problems, counts = saved
        st.success(f"Saved and in use: {counts['synonyms']} synonym sets, {counts['user_dict']} dictionary words.",
                   icon=":material/check_circle:")
        for problem in problems:
            st.warning(problem, icon=":material/warning:")


*editors, trial = st.tabs([t[0] for t in TABS.values()] + ["Try a question"])
for tab, (kind, args) in zip(editors, TABS.items()):
    with tab:
        _editor(kind, *args)
with trial:
    question = st.text_input("Question", placeholder="我的年假还剩几天", key="kb_voc_try")
    if question.strip():
        st.markdown("**BM25 reads it as:** " + " · ".join(f"`{t}`" for t in vocab.analyzer.analyze(question)))
        also = vocab.synonyms.expand(question)
        st.markdown("**Also searched:** " + (", ".join(also) if also else "nothing (no synonym set names its words)"))
