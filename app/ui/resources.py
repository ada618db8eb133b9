"""Models and index, loaded once per app process (`st.cache_resource`) and shared by every browser session.

The embedder is cached on its own (by name, device, dtype and models folder) so that several indexes, or a
restart of the service after a settings change, never load the same model twice. The index may be missing (a
fresh clone before `kb ingest`) or built by another embedder: the app still starts, says which, and the pages
that need no index (playground, library, status) keep working.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import streamlit as st

from app.search import SearchService
from app.settings import Settings, get_settings
from retrieval.embedder import Embedder
from retrieval.index import IndexMismatch, IndexNotFound


@dataclass
class Engine:
    """The shared `SearchService` and why its index is not loaded (None when it is)."""

    service: SearchService
    index_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def settings(self) -> Settings:
        return self.service.settings

    def reload_index(self) -> None:
        """Read the live index version again (after an ingest or a delete, here or by `kb ingest`)."""
        with self.lock:
            try:
                self.service.reload_index()
                self.index_error = None
            except IndexNotFound:
                self.service.index = None
                self.index_error = (f"No index at {self.service.index_dir} yet. Upload documents on the Library "
                                    f"page, or run `kb ingest PATH --index {self.service.index_dir}` (or `kb demo`).")
            except IndexMismatch as exc:
                self.service.index = None
                self.index_error = str(exc)


@st.cache_resource(show_spinner="Loading the embedding model…")
def _embedder(name: str, device: str, dtype: str, models_dir: str) -> Embedder:
    return Embedder(name, device, dtype, models_dir).load()


@st.cache_resource(show_spinner="Loading the reranker and the index…")
def _engine(key: str, _settings: Settings) -> Engine:
    s = _settings
    service = SearchService(s)
    service.embedder = _embedder(s.embedder, s.device, s.dtype, str(s.models_dir))
    service.load_reranker()
    engine = Engine(service)
    engine.reload_index()
    return engine


def engine() -> Engine:
    """The engine for the current settings (`KB_*` variables and the config file, read once per process)."""
    s = get_settings()
    return _engine(s.model_dump_json(), s)
