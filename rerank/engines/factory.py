"""Pick the engine for a reranker name.

`create_reranker` is cheap (reads at most a config.json) and returns a reranker not loaded yet. Loaded models are
shared through the process's one `ModelPool` (`rerank.engines.pool`, made by `app.components`): the API and the app
never load a model per request.
"""

from __future__ import annotations

from pathlib import Path

from rerank.errors import RerankerParameterError
from rerank.kinds import is_llm_reranker, read_config
from rerank.protocol import Reranker
from rerank.types import RerankerOptions


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

        if options.backend not in ("torch", "auto") or options.quantize:  # auto: torch is its only runtime
            raise RerankerParameterError("backend", options.backend if options.backend not in ("torch", "auto")
                                         else f"{options.backend}+quantize",
                                         f"torch without quantize for the LLM reranker {name!r}",
                                         "set KB_RERANK_BACKEND=torch and KB_RERANK_QUANTIZE=false")
        return LLMReranker(name, options)
    from .cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(name, options)
