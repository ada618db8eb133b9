"""The Streamlit entry file: `kb ui` runs `streamlit run` on it (see app/cli/ui.py).

With sign-in configured, nobody gets past the sign-in page without logging in: before login there is no search
box, no document text and no count. After login (or in open mode) it loads models and index once
(`resources.live()`), draws the sidebar (who is signed in, their groups, sign-out; the search settings) and the
status line every page starts with (`components/banners.py`), then runs the chosen page from `views/`: Search,
Raw data and Rerank playground for everyone, Library, Analytics, Vocabulary, Tuning and Status for admins only
(absent from the navigation for others, so opening their URL lands on Search).

Two Streamlit rules shape this folder: a folder named `pages/` beside this file would switch Streamlit to its
older multipage mode, where every file in it is a page reachable by URL without passing through this file (and
its sign-in gate), so the page scripts live in `views/`; and Streamlit puts this file's folder on sys.path, so no
file here may be named like a package the project imports (never `app.py`).
"""

from __future__ import annotations

import streamlit as st

from app.settings import get_settings
from app.ui import resources, session
from app.ui.components import banners, controls
from app.ui.components.cards import CSS
from retrieval.filters import value_choices

st.set_page_config(page_title="Knowledge search", page_icon=":material/travel_explore:", layout="wide")
st.html(CSS)
settings = get_settings()

who = session.caller(settings)
if who is None:
    st.navigation([st.Page("views/signin.py", title="Sign in", icon=":material/login:")], position="hidden").run()
    st.stop()

live = resources.live()
service = live.service
index = service.index
groups = sorted({g for rec in index.documents.values() for g in rec.acl}) if index is not None else []
side = st.sidebar
if who.via == "open":
    side.caption("Open mode: no sign-in configured.")
else:
    side.markdown(f"Signed in as **{who.name or who.who}**" + (" · admin" if who.admin else ""))
    side.caption("Groups: " + (", ".join(who.groups) if who.groups else "none (public documents only)")
                 if who.groups is not None else "Groups: every document (admin)")
    if side.button("Sign out", icon=":material/logout:", key="kb_signout"):
        st.logout()
choices = value_choices(index.visible_documents(None if who.groups is None else list(who.groups)).values()) \
    if index is not None else {}
controls.sidebar(service.defaults, who, groups, choices)  # with the saved settings applied
banners.show(service, who)  # one line: the mode, the models, what is missing; details behind it

pages = [
    st.Page("views/search.py", title="Search", icon=":material/search:", default=True),
    st.Page("views/raw_table.py", title="Raw data", icon=":material/table_chart:"),
    st.Page("views/playground.py", title="Rerank playground", icon=":material/science:"),
]
if who.admin:
    pages += [
        st.Page("views/library.py", title="Library", icon=":material/folder_open:"),
        st.Page("views/analytics.py", title="Analytics", icon=":material/insights:"),
        st.Page("views/vocabulary.py", title="Vocabulary", icon=":material/spellcheck:"),
        st.Page("views/tuning.py", title="Tuning", icon=":material/tune:"),
        st.Page("views/status.py", title="Status", icon=":material/monitor_heart:"),
    ]
st.navigation(pages, position="top").run()
