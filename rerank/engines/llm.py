"""`LLMReranker`: FlagEmbedding's decoder rerankers (bge-reranker-v2-gemma via FlagLLMReranker,
bge-reranker-v2-minicpm-layerwise via LayerWiseFlagLLMReranker) behind the same `Reranker` protocol.

Same contract as `CrossEncoderReranker`: cleaned text, windows with the query whole (FlagEmbedding would
truncate), raw score kept (normalize=False) and `score = sigmoid(raw)`, Python floats in input order, device and
dtype chosen once by `choose_device`, bounded CUDA OOM back-off. No trust_remote_code unless allowed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rerank.batching import score_in_batches
from rerank.errors import RerankerLoadError
from rerank.kinds import architecture, is_layerwise, read_config
from rerank.text import check_query, prepare_texts
from rerank.types import RerankerOptions, sigmoid
from rerank.windows import split_windows

from .base import EngineBase, score_windows

# FlagEmbedding wraps the pair as "A: {query}\nB: {passage}\n{prompt}" plus a BOS token; reserve room for it.
PROMPT = ("Given a query A and a passage B, determine whether the passage contains an answer to the query by "
          "providing a prediction of either 'Yes' or 'No'.")
_WRAPPER_TOKENS = 8


class LLMReranker(EngineBase):
    kind = "llm-reranker"
    DEFAULT_BATCH = 16

    def __init__(self, name_or_path: str, options: RerankerOptions | None = None,
                 cutoff_layers: list[int] | None = None):
        super().__init__(name_or_path, options)
        self.batch_size = self.options.batch_size or self.DEFAULT_BATCH
        self.max_length = self.options.max_length
        self.long_passage = self.options.long_passage
        self.cutoff_layers = cutoff_layers
        self._flag = None
        self._resolved = None
        self._config: dict[str, Any] | None = None
        self._layerwise = False
        self._extra_tokens = 0
        self._batch_limit = self.batch_size

    @property
    def loaded(self) -> bool:
        return self._flag is not None

    def _describe(self) -> dict[str, Any]:
        return {"backend": "torch", "path": self._resolved.path if self._resolved else None,
                "origin": self._resolved.origin if self._resolved else None,
                "architecture": architecture(self._config), "max_length": self.max_length,
                "batch_size": self.batch_size, "effective_batch_size": self._batch_limit,
                "long_passage": self.long_passage,
                "details": {"layerwise": self._layerwise, "allow_remote_code": self.options.allow_remote_code}}

    def load(self) -> LLMReranker:
        with self._lock:
            if self._flag is not None:
                return self
            from retrieval.device import choose_device
            from retrieval.models import ModelNotAvailable, resolve_model

            started = time.perf_counter()
            self._require_remote_code_if_layerwise(None)
            try:
                resolved = resolve_model(self._name, self.options.models_dir)
            except ModelNotAvailable as exc:
                raise RerankerLoadError(f"reranker {self._name!r} cannot be loaded: {exc}") from exc
            config = read_config(resolved.path)
            layerwise = self._require_remote_code_if_layerwise(config)
            choice = choose_device(self.options.device, self.options.dtype)
            try:
                from FlagEmbedding import FlagLLMReranker, LayerWiseFlagLLMReranker

                cls = LayerWiseFlagLLMReranker if layerwise else FlagLLMReranker
                kwargs: dict[str, Any] = dict(use_fp16=choice.dtype == "float16", use_bf16=choice.dtype == "bfloat16",
                                              devices=[choice.device], batch_size=self.batch_size,
                                              max_length=self.max_length, normalize=False,
                                              trust_remote_code=self.options.allow_remote_code)
                if layerwise:
                    kwargs["cutoff_layers"] = self._cutoff(config)
                flag = cls(resolved.path, **kwargs)
            except Exception as exc:
                raise RerankerLoadError(f"reranker {self._name!r} (LLM reranker) could not be loaded from "
                                        f"{resolved.path} ({exc.__class__.__name__}: {str(exc)[:200]})") from exc
            # scoring is one forward pass: a KV cache only costs memory, and the MiniCPM code FlagEmbedding
            # bundles calls a cache method (get_usable_length) that current transformers no longer has
            flag.model.config.use_cache = False
            tok = flag.tokenizer
            self._extra_tokens = (len(tok(PROMPT, add_special_tokens=False)["input_ids"])
                                  + len(tok("A: \nB: \n", add_special_tokens=False)["input_ids"]) + _WRAPPER_TOKENS)
            self._flag, self._resolved, self._config, self._choice = flag, resolved, config, choice
            self._layerwise = layerwise
            self._load_ms = round((time.perf_counter() - started) * 1000, 1)
            return self

    def _require_remote_code_if_layerwise(self, config: dict[str, Any] | None) -> bool:
        layerwise = is_layerwise(self._name, config)
        if layerwise and not self.options.allow_remote_code:
            raise RerankerLoadError(
                f"reranker {self._name!r} is a layer-wise MiniCPM reranker whose model code lives in the "
                "model folder; it needs allow_remote_code (KB_RERANK_ALLOW_REMOTE_CODE=true, trust_remote_code) — "
                "set it only for a folder you trust")
        return layerwise

    def _cutoff(self, config: dict[str, Any] | None) -> list[int]:
        """The layers whose heads score: as given, else layer 28 (FlagEmbedding's recommendation for the 40-layer
        bge-reranker-v2-minicpm-layerwise) or the last one of a shallower model."""
        if self.cutoff_layers:
            return self.cutoff_layers
        layers = (config or {}).get("num_hidden_layers")
        return [min(28, layers)] if isinstance(layers, int) and layers > 0 else [28]

    def _predict(self, batch: list[tuple[str, str]]) -> list[float]:
        kwargs: dict[str, Any] = {"batch_size": len(batch), "normalize": False, "device": self._choice.device}
        if self._layerwise:
            kwargs["cutoff_layers"] = self._cutoff(self._config)
        scores = self._flag.compute_score_single_gpu(self._flag.get_detailed_inputs(batch), **kwargs)
        if scores and isinstance(scores[0], list):  # one list per cutoff layer: the last layer decides
            scores = scores[-1]
        if not isinstance(scores, list):
            scores = [scores]
        return [float(s) for s in scores]

    def _tokenizer(self):
        return self._flag.tokenizer if self._flag is not None else None

    def score(self, query: str, texts: Sequence[str]) -> list[tuple[float, float]]:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string; wrap it in a list")
        self.load()
        query = check_query(query)
        cleaned = prepare_texts(texts)
        if not cleaned:
            return []
        tok = self._flag.tokenizer
        with self._lock:  # a fast tokenizer is not safe to share between threads
            per_text = [split_windows(tok, query, t, self.max_length, index=i, extra_tokens=self._extra_tokens)
                        for i, t in enumerate(cleaned)]

        def run(windows):
            with self._lock:
                batch = score_in_batches([(query, w.text) for w in windows], [w.n_tokens for w in windows],
                                         self._batch_limit, self._predict)
                self._batch_limit = batch.batch_size
                return batch.scores

        return [(raw, sigmoid(raw)) for raw in score_windows(per_text, run, self.long_passage)]
