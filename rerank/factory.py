"""Pick the engine for a reranker name, and share one loaded instance per process.

`create_reranker` is cheap (reads at most a config.json); `get_reranker` loads once and returns the same object
to every caller with the same arguments (the API and the app never load a model per request).
"""

from __future__ import annotations

import threading
from pathlib import Path

from rerank.kinds import is_llm_reranker, read_config
from rerank.protocol import Reranker

_SHARED: dict[tuple, Reranker] = {}
_SHARED_LOCK = threading.Lock()


def is_disabled(name: str | None) -> bool:
    """`none` (any case), empty or None means: no reranker, recall-only results."""
    return name is None or not name.strip() or name.strip().lower() == "none"


def create_reranker(name: str, device: str = "auto", dtype: str = "auto", batch_size: int | None = None,
                    max_length: int = 512, long_passage: str = "max", models_dir: str | Path = "models",
                    allow_remote_code: bool = False, api_key: str | None = None, backend: str = "torch",
                    quantize: bool = False, threads: int | None = None, exact_top: int = 10) -> Reranker:
    """A not-yet-loaded reranker: `RemoteReranker` for a URL (`tei+http://host:8080`, `http(s)://...`; `api_key`
    is sent to it as a bearer token), `LLMReranker` for causal-LM configs (or gemma/minicpm names without a local
    config), else `CrossEncoderReranker`. `backend` (torch | onnx | openvino), `quantize` (int8, onnx only),
    `threads` and `exact_top` (float32 re-scoring of near-ties, rerank.exact) apply to the cross-encoder (see
    rerank.backends); an LLM reranker runs on torch only."""
    from rerank.remote import RemoteReranker, is_remote

    if is_remote(name):
        return RemoteReranker(name, batch_size=batch_size or 32, api_key=api_key)
    local = Path(name).expanduser()
    folder = local if local.is_dir() else Path(models_dir) / name
    config = read_config(folder) if folder.is_dir() else None
    if is_llm_reranker(name, config):
        from rerank.llm import LLMReranker

        if backend != "torch" or quantize:
            from rerank.errors import RerankerParameterError

            raise RerankerParameterError("backend", backend if backend != "torch" else "torch+quantize",
                                         f"torch without quantize for the LLM reranker {name!r}",
                                         "set KB_RERANK_BACKEND=torch and KB_RERANK_QUANTIZE=false")

        return LLMReranker(name, device=device, dtype=dtype, batch_size=batch_size or 16, max_length=max_length,
                           long_passage=long_passage, models_dir=models_dir, allow_remote_code=allow_remote_code)
    from rerank.engine import CrossEncoderReranker

    return CrossEncoderReranker(name, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length,
                                long_passage=long_passage, models_dir=models_dir, allow_remote_code=allow_remote_code,
                                backend=backend, quantize=quantize, threads=threads, exact_top=exact_top)


def get_reranker(name: str, device: str = "auto", dtype: str = "auto", batch_size: int | None = None,
                 max_length: int = 512,
                 long_passage: str = "max", models_dir: str | Path = "models",
                 allow_remote_code: bool = False, api_key: str | None = None, backend: str = "torch",
                 quantize: bool = False, threads: int | None = None, exact_top: int = 10) -> Reranker:
    """The process-wide loaded reranker for these arguments (loaded on first call, then shared)."""
    key = (name, device, dtype, batch_size, max_length, long_passage, str(models_dir), allow_remote_code, api_key,
           backend, quantize, threads, exact_top)
    with _SHARED_LOCK:
        reranker = _SHARED.get(key)
        if reranker is None:
            reranker = create_reranker(name, device, dtype, batch_size, max_length, long_passage, models_dir,
                                       allow_remote_code, api_key, backend, quantize, threads, exact_top)
            reranker.load()
            _SHARED[key] = reranker
        return reranker


def clear_shared() -> None:
    """Forget shared instances (tests, or after `kb models` switched the active model)."""
    with _SHARED_LOCK:
        _SHARED.clear()
