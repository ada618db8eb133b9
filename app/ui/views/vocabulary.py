"""Vocabulary page (admins): edit the synonyms and the user dictionary, and see how a question is read.

Saving writes the file whole (`app.services.vocabulary`), records it in the audit log and makes this app use it at
once; a running API sees the change within `vocabulary_reload_s` seconds. A line the reader cannot use is listed
with its number and skipped; the rest applies.
"""

from __future__ import annotations

import streamlit as st

from app.components import vocabulary_paths
from app.services.vocabulary import read_words, save_words
from app.ui import resources, session
from retrieval.vocabulary import file_stamp

who = session.current()
session.require_admin(who, "Vocabulary")
live = resources.live()
s = live.settings
user_dict_path, synonyms_path = vocabulary_paths(s)

st.title("Vocabulary")
st.caption(f"Synonyms: {synonyms_path} · user dictionary: {user_dict_path} · a running API rereads them within "
           f"{s.vocabulary_reload_s:g} s of a change")
live.check_vocabulary()  # edited on disk since the last look
vocab = live.vocabulary
for problem in vocab.problems:
    st.warning(problem, icon=":material/warning:")

TABS = {
    "synonyms": ("Synonyms", synonyms_path,
                 "One set a line, terms separated by commas, any language; a term may be several words. A search "
                 "for one term also searches the others (weighted below the words typed) and says so.",
                 "年假, 年休假, annual leave\nWFH, 远程办公, work from home"),
    "user_dict": ("User dictionary", user_dict_path,
                  "jieba's format: `word [frequency] [tag]` a line, for names and terms jieba would split "
                  "(钉钉, 飞书审批). Saving analyses BM25 again from the stored text (no re-embedding).",
                  "钉钉\n飞书审批 10 n"),
}


def _save(kind: str, path, text: str) -> None:
    problems = save_words(kind, path, text)
    counts = live.reload_vocabulary().vocabulary.counts
    resources.audit().record(who, f"edit {kind}", path=str(path), lines=len(text.splitlines()),
                             skipped=len(problems))
    st.session_state["kb_voc_saved"] = (kind, problems, counts)


def _editor(kind: str, title: str, path, help_text: str, example: str) -> None:
    st.caption(help_text)
    stamp = file_stamp(path, None)[0]  # the editor starts again from the file whenever the file changes
    with st.form(f"kb-voc-{kind}"):
        text = st.text_area(title, read_words(path), height=260, placeholder=example, key=f"kb_voc_{kind}_{stamp}")
        if st.form_submit_button("Save", type="primary", icon=":material/save:"):
            _save(kind, path, text)
            st.rerun()
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
