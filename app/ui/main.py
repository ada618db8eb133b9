"""The Streamlit entry file: `kb ui` runs `streamlit run` on it (see app/cli_ui.py).

It sets up the page, loads models and index once (`resources.engine()`), draws the shared sidebar and the
banners every page needs (reranker missing, embedder fallback, no index), then runs the chosen page from
`views/`. Streamlit puts this file's folder on sys.path, so no file here may be named like a package the
project imports (never `app.py`).
"""

from __future__ import annotations

import streamlit as st

from app.ui import banners, controls, resources
from app.ui.cards import CSS

st.set_page_config(page_title="Knowledge search", page_icon=":material/travel_explore:", layout="wide")
st.html(CSS)

engine = resources.engine()
index = engine.service.index
groups = sorted({g for rec in index.documents.values() for g in rec.acl}) if index is not None else []
controls.sidebar(engine.settings, groups)
banners.show(engine)

pages = [
    st.Page("views/search.py", title="Search", icon=":material/search:", default=True),
    st.Page("views/raw_table.py", title="Raw data", icon=":material/table_chart:"),
    st.Page("views/playground.py", title="Rerank playground", icon=":material/science:"),
    st.Page("views/library.py", title="Library", icon=":material/folder_open:"),
    st.Page("views/tuning.py", title="Tuning", icon=":material/tune:"),
    st.Page("views/status.py", title="Status", icon=":material/monitor_heart:"),
]
st.navigation(pages, position="top").run()
