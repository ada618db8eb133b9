"""Vocabulary page (admins): edit the synonyms and the user dictionary, pin best bets, and see how a question is
read.

Saving writes the text whole into the shared database (`app.services.vocabulary`), records it in the audit log and
makes this app use it at once; every running API and app, on any machine, sees the change within
`vocabulary_reload_s` seconds. A save is refused when someone else saved the same words since this page showed
them (nothing is lost: the page shows theirs). A line the reader cannot use is listed with its number and skipped;
the rest applies.

Best bets (`app.services.bestbets`): a document or one passage of it pinned to questions, with a label; added and
removed here (each change audited), kept in the same shared database, shown by every search to those who may read
the document.

Suggestions (`app.services.suggestions`): synonym pairs and best bets learned from the search log (questions
reformulated after a failure, questions never answered), with their counts; Accept writes them (audited), Dismiss
hides them for good.
"""

from __future__ import annotations

import streamlit as st

from app.components import apply_user_dictionary, best_bets_store, decisions, vocabulary_store
from app.errors import KbError
from app.services.bestbets import MATCHES, new_bet
from app.services.pinning import target
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
                 "One set a line, terms separated by commas, any language; a term may be several words (matched "
                 "as a phrase). A search naming one term searches the set as one word and says so. `a, b => c`: "
                 "a search naming a or b searches c instead (one way).",
                 "年假, 年休假, annual leave\nWFH, out of office => 远程办公"),
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


MATCH_HELP = {"exact": "the whole question", "contains": "a word or phrase in the question",
              "synonyms": "a word in the question or in its synonyms"}


def _follow() -> None:
    """This app shows a change at once; other processes within `vocabulary_reload_s`."""
    if live.service.best_bets is not None:
        live.service.best_bets.refresh()


def _pin(phrases: str, match: str, doc_id: str | None, chunk_id: str, label: str) -> None:
    try:
        doc_id, chunk_id = target(live.service.index, doc_id, chunk_id.strip() or None)
        bet = new_bet(phrases.splitlines(), match, label, doc_id, chunk_id, who.who)
        bets.add(bet, who.who)
    except KbError as exc:
        st.session_state["kb_bb_said"] = ("error", exc.message)
        return
    _follow()
    resources.audit().record(who, "add best bet", bet_id=bet.bet_id, doc_id=doc_id, chunk_id=chunk_id,
                             match=bet.match, phrases=list(bet.phrases), label=bet.label)
    st.session_state["kb_bb_said"] = ("success", f"Pinned ({bet.bet_id}): shown above the results of matching "
                                                 "questions to everyone who may read the document.")


def _unpin(bet_id: str) -> None:
    try:
        bet = bets.remove(bet_id, who.who)
    except KbError as exc:
        st.session_state["kb_bb_said"] = ("error", exc.message)
        return
    _follow()
    resources.audit().record(who, "remove best bet", bet_id=bet.bet_id, doc_id=bet.doc_id, chunk_id=bet.chunk_id,
                             phrases=list(bet.phrases))
    st.session_state["kb_bb_said"] = ("success", f"Removed {bet.bet_id}.")


def _best_bets() -> None:
    st.caption("Pin a document (its first passage) or one passage of it to questions: it is shown first, with your "
               "label, to everyone who may read the document, above the normal results (which stay).")
    said = st.session_state.pop("kb_bb_said", None)  # said once
    if said:
        (st.error if said[0] == "error" else st.success)(said[1])
    documents = live.service.index.documents if live.service.index is not None else {}
    doc_ids = sorted(documents, key=lambda d: (documents[d].title or documents[d].source).lower())
    with st.form("kb-bb-add"):
        phrases = st.text_area("Questions or words, one a line", key="kb_bb_phrases", height=100,
                               placeholder="年假\nannual leave")
        match = st.selectbox("Match", MATCHES, index=1, key="kb_bb_match",
                             format_func=lambda m: f"{m}: {MATCH_HELP[m]}")
        doc_id = st.selectbox("Document", doc_ids, key="kb_bb_doc", index=None, placeholder="Choose a document",
                              format_func=lambda d: f"{documents[d].title or documents[d].source} ({d})")
        chunk_id = st.text_input("One passage of it (optional): its chunk_id", key="kb_bb_chunk")
        label = st.text_input("Label", "recommended", key="kb_bb_label", max_chars=80)
        if st.form_submit_button("Pin", type="primary", icon=":material/push_pin:"):
            _pin(phrases, match, doc_id, chunk_id, label)
            st.rerun()
    current = bets.load().bets
    if not current:
        st.caption("No best bets yet.")
        return
    for bet in current:
        rec = documents.get(bet.doc_id)
        left, right = st.columns([6, 1], vertical_alignment="center")
        where = (rec.title or rec.source) if rec else f"{bet.doc_id} (not in the index: shown to nobody)"
        left.markdown(f"**★ {bet.label}** · {bet.match}: " + " | ".join(f"`{p}`" for p in bet.phrases)
                      + f" → {where}" + (f" · passage `{bet.chunk_id}`" if bet.chunk_id else ""))
        right.button("Remove", key=f"kb-bb-rm-{bet.bet_id}", on_click=_unpin, args=(bet.bet_id,),
                     icon=":material/delete:")


def _decide(suggestion, accept: bool, doc_key: str | None = None) -> None:
    chosen = decisions(s)
    try:
        if not accept:
            chosen.dismiss(suggestion.suggestion_id, who.who)
            written = {}
        else:
            doc_id = st.session_state.get(doc_key) if doc_key else None
            if suggestion.kind == "best_bet":
                doc_id = target(live.service.index, doc_id or suggestion.doc_id, None)[0]
            written = chosen.accept(suggestion, who.who, doc_id)
    except KbError as exc:
        st.session_state["kb_sg_said"] = ("error", exc.message)
        return
    if written.get("kind") == "synonyms":
        live.reload_vocabulary()
    _follow()
    resources.audit().record(who, "accept suggestion" if accept else "dismiss suggestion",
                             suggestion_id=suggestion.suggestion_id, count=suggestion.count,
                             **(written or {"terms": list(suggestion.terms)}))
    st.session_state["kb_sg_said"] = ("success", ("Accepted: " + (f"synonyms line '{written['line']}' added"
                                      if written.get("kind") == "synonyms" else f"best bet {written.get('bet_id')} "
                                      "pinned")) if accept else f"Dismissed {suggestion.suggestion_id}.")


def _suggestions() -> None:
    events = live.service.events
    if events is None:
        st.info("Searches are not recorded (the setting `events` is off, or its database cannot be opened): "
                "nothing to learn from.", icon=":material/info:")
        return
    st.caption("Learned from the search log: words people used after a question failed (no answer, or a "
               "thumbs-down) and before one worked (a thumbs-up), and questions asked often without an answer.")
    said = st.session_state.pop("kb_sg_said", None)
    if said:
        (st.error if said[0] == "error" else st.success)(said[1])
    days = st.slider("Days of searches", 1, 365, 30, key="kb_sg_days")
    found = decisions(s).open(events.history(days))
    if not found:
        st.caption("No suggestions.")
        return
    documents = live.service.index.documents if live.service.index is not None else {}
    for x in found:
        with st.container(border=True):
            what = (" = ".join(f"`{t}`" for t in x.terms) if x.kind == "synonyms" else
                    f"pin to `{x.terms[0]}`: " + ((documents[x.doc_id].title or documents[x.doc_id].source)
                                                  if x.doc_id in documents else "a document to choose"))
            st.markdown(f"**{'Synonyms' if x.kind == 'synonyms' else 'Best bet'}** {what} — {x.count} times by "
                        f"{x.people} {'person' if x.people == 1 else 'people'} ({x.reason})")
            for first, second in x.examples:
                st.caption(f"“{first}” → “{second}”")
            doc_key = None
            if x.kind == "best_bet" and x.doc_id not in documents:
                doc_key = f"kb_sg_doc_{x.suggestion_id}"
                st.selectbox("Document", sorted(documents), key=doc_key, index=None, placeholder="Choose a document",
                             format_func=lambda d: documents[d].title or documents[d].source)
            left, right = st.columns(2)
            left.button("Accept", key=f"kb-sg-ok-{x.suggestion_id}", on_click=_decide, args=(x, True, doc_key),
                        type="primary", icon=":material/check:")
            right.button("Dismiss", key=f"kb-sg-no-{x.suggestion_id}", on_click=_decide, args=(x, False),
                         icon=":material/close:")


bets = best_bets_store(s)
*editors, pinned_tab, learned_tab, trial = st.tabs([t[0] for t in TABS.values()]
                                                   + ["Best bets", "Suggestions", "Try a question"])
for tab, (kind, args) in zip(editors, TABS.items()):
    with tab:
        _editor(kind, *args)
with pinned_tab:
    _best_bets()
with learned_tab:
    _suggestions()
with trial:
    question = st.text_input("Question", placeholder="我的年假还剩几天", key="kb_voc_try")
    if question.strip():
        st.markdown("**BM25 reads it as:** " + " · ".join(f"`{t}`" for t in vocab.analyzer.analyze(question)))
        also = vocab.synonyms.expand(question)
        st.markdown("**Also searched:** " + (", ".join(also) if also else "nothing (no synonym set names its words)"))
        called = bets.load().for_query(question, also)
        st.markdown("**Best bets:** " + (", ".join(f"★ {b.label} ({b.bet_id})" for b in called) if called else
                                         "none (shown only to those who may read the document)"))
