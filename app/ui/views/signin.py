"""Sign-in page: the only thing shown before login (no search box, no document text, no counts)."""

from __future__ import annotations

import streamlit as st

from app.settings import get_settings
from app.ui import session

auth = get_settings().auth
st.title("Knowledge search")
st.write("Sign in with your company account to search the knowledge base.")
problem = session.provider_problem(auth.discovery_url)
if problem is not None:
    st.error(f"**Sign-in unavailable:** the identity provider at {auth.discovery_url} cannot be reached "
             f"({problem}). Try again later, or ask the administrator to check `KB_AUTH_PROVIDER_URL`.",
             icon=":material/cloud_off:")
if st.button("Sign in", type="primary", icon=":material/login:", disabled=problem is not None, key="kb_signin"):
    st.login()
