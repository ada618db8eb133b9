"""Models and index, loaded once per app process (`st.cache_resource`) and shared by every browser session.

The embedder is cached on its own (by name, device, dtype and models folder) so that several indexes, or a
restart of the service after a settings change, never load the same model twice. The index may be missing (a
fresh clone before `kb ingest`) or built by another embedder: the app still starts, says which, and the pages
that need no index (playground, library, status) keep working. Everything is built by `app.components`
(`load_embedder`, `build_live`); the wrappers here only keep what it built for the life of the process.
"""

from __future__ import annotations

import streamlit as st

from app.components import audit_log, build_live, load_embedder
from app.services.audit import AuditLog
from app.services.limits import Admission, active_limit
from app.services.live import LiveSearch
from app.settings import Settings, get_settings
from retrieval.embedder import Embedder


@st.cache_resource(show_spinner="Loading the embedding model…")
def _embedder(name: str, device: str, dtype: str, models_dir: str, _settings: Settings) -> Embedder:
    """Cached by the four settings `load_embedder` reads, not by the whole settings object."""
    return load_embedder(_settings)


@st.cache_resource(show_spinner="Loading the reranker and the index…")
def _live(key: str, _settings: Settings) -> LiveSearch:
    s = _settings
    # started: index versions published by any process, the vocabulary and the rollout are followed
    return build_live(s, embedder=_embedder(s.embedder, s.device, s.dtype, str(s.models_dir), s))


def live() -> LiveSearch:
    """The served search for the current settings (`KB_*` variables and the config file, read once per process):
    `.service` is the `SearchService` now, `.index_error` why it has no index, `.reload_index()` after a change,
    `.reload_vocabulary()` after the user dictionary or synonyms were edited."""
    s = get_settings()
    return _live(s.model_dump_json(), s)


def audit() -> AuditLog:
    """Where this app records admin actions and refused attempts."""
    return audit_log(get_settings())


@st.cache_resource(show_spinner=False)
def _admission(max_active: int, max_waiting: int) -> Admission:
    return Admission(max_active, max_waiting)


def admission() -> Admission:
    """How many reranks this app process runs at once and lets wait, for every browser session together: the
    API's `api_max_concurrency` and `api_max_queue` (`Admission.slot()` raises KbError overloaded past them)."""
    s = get_settings()
    return _admission(active_limit(s.api_max_concurrency, s.rerank_batching), s.api_max_queue)
