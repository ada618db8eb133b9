"""Sign-in page: the only thing shown before login (no search box, no document text, no counts). Opened at another
address than the one sign-in returns to (127.0.0.1 for localhost, say), it sends people there instead of starting a
login that cannot finish."""

from __future__ import annotations

import streamlit as st

from app.settings import get_settings
from app.ui import session

auth = get_settings().auth
st.title("Knowledge search")
st.write("Sign in with your company account to search the knowledge base.")
try:
    redirect_uri = st.secrets["auth"]["redirect_uri"]  # what `kb ui` wrote for st.login()
except (FileNotFoundError, KeyError):
    redirect_uri = None
go = session.sign_in_address(st.context.url, redirect_uri)
if go is not None:  # a login started here would come back without its state: send people where it works
    st.warning(f"**Sign-in works at [{go}]({go}), not at this address.** The sign-in returns to {go}; open the app "
               "there (bookmark that address).", icon=":material/open_in_new:")
    st.link_button("Open the sign-in address", go, type="primary", icon=":material/login:")
    st.stop()
problem = session.provider_problem(auth.discovery_url)
if problem is not None:
    st.error(f"**Sign-in unavailable:** the identity provider at {auth.discovery_url} cannot be reached "
             f"({problem}). Try again later, or ask the administrator to check `KB_AUTH_PROVIDER_URL`.",
             icon=":material/cloud_off:")
if st.button("Sign in", type="primary", icon=":material/login:", disabled=problem is not None, key="kb_signin"):
    st.login()
