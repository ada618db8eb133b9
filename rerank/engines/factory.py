"""Pick the engine for a reranker name, and share one loaded instance per process.

`create_reranker` is cheap (reads at most a config.json); `get_reranker` loads once and returns the same object
to every caller with the same name and options (the API and the app never load a model per request).
"""

from __future__ import annotations

import threading
from pathlib import Path

from rerank.errors import RerankerParameterError
from rerank.kinds import is_llm_reranker, read_config
from rerank.protocol import Reranker
from rerank.types import RerankerOptions

_SHARED: dict[tuple[str, RerankerOptions], Reranker] = {}
_SHARED_LOCK = threading.Lock()


def is_disabled(name: str | None) -> bool:
    """`none` (any case), empty or None means: no reranker, recall-only results."""
    return name is None or not name.strip() or name.strip().lower() == "none"


def create_reranker(name: str, options: RerankerOptions | None = None) -> Reranker:
    """A not-yet-loaded reranker: `RemoteReranker` for a URL (`tei+http://host:8080`, `http(s)://...`),
    `LLMReranker` for causal-LM configs (or gemma/minicpm names without a local config; torch only), else
    `CrossEncoderReranker`."""
    from .remote import RemoteReranker, is_remote

    options = options if options is not None else RerankerOptions()
    if is_remote(name):
        return RemoteReranker(name, options)
    local = Path(name).expanduser()
    folder = local if local.is_dir() else Path(options.models_dir) / name
    config = read_config(folder) if folder.is_dir() else None
    if is_llm_reranker(name, config):
        from .llm import LLMReranker

        if options.backend != "torch" or options.quantize:
            raise RerankerParameterError("backend", options.backend if options.backend != "torch" else "torch+quantize",
                                         f"torch without quantize for the LLM reranker {name!r}",
                                         "set KB_RERANK_BACKEND=torch and KB_RERANK_QUANTIZE=false")
        return LLMReranker(name, options)
    from .cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(name, options)


def get_reranker(name: str, options: RerankerOptions | None = None) -> Reranker:
    """The process-wide loaded reranker for this name and these options (loaded on first call, then shared)."""
    options = options if options is not None else RerankerOptions()
    key = (name, options)
    with _SHARED_LOCK:
        reranker = _SHARED.get(key)
        if reranker is None:
            reranker = create_reranker(name, options)
            reranker.load()
            _SHARED[key] = reranker
        return reranker


def release(name: str, options: RerankerOptions | None = None) -> None:
    """Forget the shared instance for this name and options (a model no longer served), so its memory is freed
    once the last search using it is done."""
    with _SHARED_LOCK:
        _SHARED.pop((name, options if options is not None else RerankerOptions()), None)


def clear_shared() -> None:
    """Forget shared instances (tests, or after the active model changed)."""
    with _SHARED_LOCK:
        _SHARED.clear()
