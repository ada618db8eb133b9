"""`CrossEncoderReranker`: an encoder cross-encoder (bge-reranker-v2-m3, bge-reranker-base/large, ms-marco, any
fine-tuned folder), keeping the raw logit.

- Cheap `__init__` (the options were checked when they were made; no torch import); `load()` resolves the model
  (folder, models/<name>/, HF cache, hub), picks device and dtype once (`retrieval.device.choose_device`:
  GPU → float16, CPU → float32) and checks that the weight file really holds every tensor the config needs.
- Where the forward pass runs (`options.backend`): `torch` (`rerank.engines.scorers`, any device), or on the CPU
  `onnx` / `openvino` on a cached, parity-checked export (`rerank.engines.exported`); `auto` takes torch on a GPU
  (and for bfloat16), and on a CPU in float32 whichever of torch and ONNX Runtime was measured faster on this
  machine at the same top-10 (`rerank.engines.exported.choose_cpu_backend`; `info().backend_choice` says why);
  with no dtype set and a CPU with AMX-BF16/AVX512-BF16 it then measures bfloat16 + exact re-scoring by that
  float32 backend and serves it where it is expected faster (`rerank.engines.auto`; the record keeps the figures).
- Reduced precision on the CPU, opt-in: `dtype="bfloat16"` (fast where the CPU has AMX/AVX512-BF16) or int8
  (`backend="onnx", quantize=True`), served under the policy of `rerank.engines.precision`: near-ties of the top N
  re-scored in float32, and a call whose re-scoring would redo more than `exact_max_share` of its candidates
  scored by float32 directly (never slower than float32; `info().exact_choice` says which and why).
- `score(query, texts)`: candidate text HTML-cleaned; long passages split into windows with the query whole
  (`rerank.windows`); pairs scored in length-sorted batches; the raw logit is kept (identity activation) and
  `score = sigmoid(raw)`; Python floats in input order.
- `score_requests([(query, texts), ...])`: several requests' windows scored together, in one length-sorted run,
  so pairs of different requests share forward passes (`rerank.coalesce` batches concurrent API requests this
  way); `score()` is its one-request case, so there is one code path.
- CUDA out of memory: the batch is halved and retried (bounded); at batch size 1 the model moves to CPU float32
  for the rest of the process, with a warning, and `info().fallback` says so.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rerank.batching import score_in_batches
from rerank.errors import CudaOOMExhausted, RerankerLoadError, RerankerParameterError
from rerank.kinds import architecture, is_llm_reranker, num_labels, position_limit, read_config
from rerank.params import check_max_length
from rerank.text import check_query, prepare_texts
from rerank.types import RerankerOptions, sigmoid
from rerank.windows import Prepared, Window, split_windows
from retrieval.device import DeviceChoice

from .base import EngineBase, aggregate_windows, score_windows
from .precision import NearTies
from .scorers import CPU_ONLY, Scorer, TorchScorer, cpu_has_native_bf16, native_bf16_flags

log = logging.getLogger(__name__)

CPU_BATCH, GPU_BATCH = 8, 32  # pairs per forward pass when options.batch_size is None
# ONNX Runtime and OpenVINO on a CPU: 2 pairs a pass, length-sorted, scored v2-m3's shape 1.17× faster than 8
# (same scores): the fused kernels gain nothing from more rows, and fewer rows pad less (docs/PERFORMANCE.md)
EXPORTED_CPU_BATCH = 2


def default_batch(device: str, backend: str) -> int:
    """Pairs per forward pass when no batch size is set: 32 on a GPU, 8 for PyTorch on a CPU, 2 for the exported
    backends (onnx, openvino), which run on the CPU only."""
    if device.startswith("cuda"):
        return GPU_BATCH
    return EXPORTED_CPU_BATCH if backend in CPU_ONLY else CPU_BATCH


class CrossEncoderReranker(EngineBase):
    """Encoder cross-encoder reranker. See the module docstring; `Reranker` protocol in `rerank.protocol`."""

    kind = "cross-encoder"

    def __init__(self, name_or_path: str, options: RerankerOptions | None = None):
        super().__init__(name_or_path, options)
        o = self.options
        # None: chosen with the device and backend at load (`default_batch`): on a CPU smaller batches pad less, and
        # CPU matrix products are as efficient at 8 pairs as at 32 (docs/PERFORMANCE.md)
        self.batch_size = o.batch_size or GPU_BATCH
        self.max_length = o.max_length
        self.long_passage = o.long_passage
        self._model: Scorer | None = None
        self._near_ties: NearTies | None = None  # with a reduced-precision scorer and exact_top > 0
        self._details: dict[str, Any] = {}
        self._quantized = False
        self._agreement: dict[str, Any] | None = None
        self._warning: str | None = None
        self._resolved = None
        self._config: dict[str, Any] | None = None
        self._batch_limit = self.batch_size
        self._oom_halvings = 0
        self._fallback: str | None = None
        self._backend_choice: dict[str, Any] | None = None  # with backend auto: which one, why, what was measured
        self._auto_torch: Scorer | None = None  # the PyTorch scorer timed by backend auto, kept if torch wins
        self._auto_exported = None  # the exported model opened by backend auto's bfloat16 trial, kept if it serves
        self._auto_served: Scorer | None = None  # the bfloat16 copy backend auto chose, with its near-tie re-scorer
        self._exact_batch: int | None = None  # the re-scorer's pairs per pass, where it is another backend

    # ---- description -------------------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def path(self) -> str | None:
        return self._resolved.path if self._resolved else None

    @property
    def tokenizer(self):
        self._require_loaded()
        return self._model.tokenizer

    def _tokenizer(self):
        return self._model.tokenizer if self._model is not None else None

    @property
    def backend(self) -> str | None:
        """The backend in use after load (torch, onnx or openvino); None before."""
        return self._model.backend if self._model is not None else None

    @property
    def cross_encoder(self):
        """The underlying sentence_transformers.CrossEncoder (after load, torch backend only)."""
        self._require_loaded()
        if self._model.backend != "torch":
            raise RuntimeError(f"reranker {self._name!r} runs on {self._model.backend}, not a PyTorch CrossEncoder")
        return self._model.cross_encoder

    def _describe(self) -> dict[str, Any]:
        details = {k: v for k, v in self._details.items() if k not in ("backend", "threads")}
        return {
            "backend": self.backend, "path": self.path, "origin": self._resolved.origin if self._resolved else None,
            "architecture": architecture(self._config), "num_labels": num_labels(self._config),
            "max_length": self.max_length, "model_max_length": position_limit(self._config),
            "batch_size": self.batch_size, "effective_batch_size": self._batch_limit,
            "long_passage": self.long_passage, "threads": self._details.get("threads"), "fallback": self._fallback,
            "oom_halvings": self._oom_halvings, "quantized": self._quantized,
            "exact_top": self._near_ties.top if self._near_ties else 0,
            "exact_margin": self._near_ties.margin if self._near_ties else None,
            "exact_rescored": self._near_ties.stats if self._near_ties else None,
            "agreement": self._agreement, "warning": self._warning,
            "exact_choice": self._near_ties.choice if self._near_ties else None,
            "backend_choice": self._backend_choice,
            "details": {**details, "model_type": (self._config or {}).get("model_type"),
                        "allow_remote_code": self.options.allow_remote_code},
        }

    # ---- loading -----------------------------------------------------------------------------------------------
    def load(self) -> CrossEncoderReranker:
        """Resolve, validate and load the model once (idempotent, thread-safe). Returns self.

        Raises RerankerLoadError (model missing, not a one-label cross-encoder, weights incomplete or broken),
        RerankerParameterError (max_length beyond the model's positions) or ValueError from device choice.
        """
        with self._lock:
            if self._model is not None:
                return self
            from retrieval.models import ModelNotAvailable, resolve_model

            started = time.perf_counter()
            try:
                resolved = resolve_model(self._name, self.options.models_dir)
            except ModelNotAvailable as exc:
                raise RerankerLoadError(f"reranker {self._name!r} cannot be loaded: {exc}") from exc
            config = read_config(resolved.path)
            if config is None:
                raise RerankerLoadError(f"reranker {self._name!r}: {Path(resolved.path) / 'config.json'} is missing "
                                        f"or not valid JSON; run `kb models check {resolved.path}`")
            if is_llm_reranker(self._name, config):
                raise RerankerLoadError(f"reranker {self._name!r} is a causal LM ({architecture(config)}); load it "
                                        "with rerank.engines.llm.LLMReranker (create_reranker does this)")
            arch = architecture(config) or "?"
            if not arch.endswith("ForSequenceClassification") or num_labels(config) != 1:
                raise RerankerLoadError(
                    f"reranker {self._name!r} is {arch} with num_labels={num_labels(config)}; a cross-encoder "
                    "reranker is *ForSequenceClassification with one label (one relevance logit); "
                    f"run `kb models check {resolved.path}`")
            check_max_length(self.max_length, position_limit(config), self._name)
            self._check_weights(resolved.path, config)
            choice = self._choose_device()
            self._model = self._build(resolved, choice)
            if (self._backend_choice or {}).get("dtype") == "bfloat16":  # backend auto measured bfloat16 + exact faster
                choice = DeviceChoice(**{**choice.to_dict(), "dtype": "bfloat16"})
            if choice.dtype == "bfloat16" and getattr(self._model, "dtype", choice.dtype) != choice.dtype:
                choice = DeviceChoice(**{**choice.to_dict(), "dtype": self._model.dtype,
                                         "reason": f"{choice.reason}; bfloat16 failed its agreement check"})
            if self._backend_choice is not None:  # backend auto: the choice says which runtime and why
                choice = DeviceChoice(**{**choice.to_dict(),
                                         "reason": f"{choice.reason}; {self._backend_choice['reason']}"})
            self._resolved, self._config, self._choice = resolved, config, choice
            if self.options.batch_size is None:
                self.batch_size = self._batch_limit = default_batch(choice.device, self._model.backend)
            self._load_ms = round((time.perf_counter() - started) * 1000, 1)
            log.info("reranker %s loaded from %s on %s/%s (%s)", self._name, resolved.path, choice.device,
                     choice.dtype, choice.reason)
            return self

    def _check_weights(self, path: str, config: dict[str, Any]) -> None:
        """Refuse a folder whose weights lack tensors the config needs (transformers would fill them randomly)."""
        from rerank.validation.weights import (
            WeightsError,
            compare_shapes,
            expected_tensor_shapes,
            file_tensor_shapes,
            find_weight_files,
        )

        try:
            files = find_weight_files(path)
        except WeightsError as exc:
            raise RerankerLoadError(f"reranker {self._name!r}: {exc}") from exc
        if not files:
            raise RerankerLoadError(f"reranker {self._name!r}: no model.safetensors or pytorch_model.bin in {path}; "
                                    f"copy the weights there, then run `kb models check {path}`")
        if files[0].suffix != ".safetensors":
            return  # reading a .bin means unpickling it all; `kb models check` does that, the load path does not
        try:
            from transformers import AutoConfig

            hf_config = AutoConfig.from_pretrained(path, trust_remote_code=self.options.allow_remote_code)
            mismatch = compare_shapes(file_tensor_shapes(files), expected_tensor_shapes(hf_config))
        except WeightsError as exc:
            raise RerankerLoadError(f"reranker {self._name!r}: {exc}") from exc
        if not mismatch.ok:
            raise RerankerLoadError(f"reranker {self._name!r}: {files[0].name} does not match config.json: "
                                    f"{mismatch.describe()}; run `kb models check {path}`")

    def _choose_device(self) -> DeviceChoice:
        """Device and dtype; the ONNX Runtime and OpenVINO backends run on the CPU in float32."""
        from retrieval.device import choose_device

        o = self.options
        if o.backend not in CPU_ONLY:  # torch, or auto (which picks its runtime from this choice)
            return choose_device(o.device, o.dtype)
        if o.device.startswith("cuda"):
            raise RerankerParameterError("device", o.device, f"cpu or auto with backend={o.backend}",
                                         "use --backend torch on a GPU (FP16), or --device cpu")
        if o.dtype not in ("auto", "float32"):
            raise RerankerParameterError("dtype", o.dtype, f"auto or float32 with backend={o.backend}",
                                         "for int8 set quantize (KB_RERANK_QUANTIZE=true) instead")
        cpu = choose_device("cpu", "float32")
        return DeviceChoice(**{**cpu.to_dict(), "reason": f"backend {o.backend} runs on the CPU in float32"})

    def _auto_backend(self, resolved, choice: DeviceChoice) -> str:
        """Backend auto: torch on a GPU and for bfloat16, onnx for int8, else the faster exact CPU backend as
        measured on this machine (`rerank.engines.exported.choose_cpu_backend`). Sets `_backend_choice`."""
        from .exported import choose_cpu_backend

        o = self.options
        if choice.device.startswith("cuda"):
            backend, reason = "torch", "a GPU: torch (the only GPU backend)"
        elif o.quantize:
            backend, reason = "onnx", "quantize (int8) runs on ONNX Runtime"
        elif choice.dtype != "float32":
            backend, reason = "torch", f"{choice.dtype} on a CPU runs on torch"
        else:
            def torch_scorer() -> Scorer:
                self._auto_torch = self._torch_scorer(resolved, choice.device, "float32")
                return self._auto_torch

            backend, record = choose_cpu_backend(
                self._name, resolved.path, resolved.origin, o, torch_scorer,
                lambda b: o.batch_size if o.batch_size is not None else default_batch("cpu", b))
            self._backend_choice = self._auto_bfloat16(resolved, backend, record)
            return self._backend_choice["backend"]
        self._backend_choice = {"backend": backend, "reason": reason}
        return backend

    def _auto_bfloat16(self, resolved, backend: str, record: dict[str, Any]) -> dict[str, Any]:
        """Backend auto's third candidate (`rerank.engines.auto`): where the options and the CPU allow it, measure
        bfloat16 + exact re-scoring by the float32 `backend` just chosen, and serve it where it is expected faster
        (sets `_auto_served` and the near-tie re-scorer). Returns the choice record, with what was measured."""
        from .auto import NAMES, measure_bfloat16, pick_bfloat16, recorded, why_not_bfloat16
        from .auto import record as keep
        from .exported import exported_options, load_exported, progress

        o = self.options
        flags = native_bf16_flags()
        why_not = why_not_bfloat16(o.dtype, o.exact_top, o.quantize, flags)
        if why_not is not None:
            return {**record, "bfloat16": {"tried": False, "flags": flags, "reason": why_not}}
        figures = recorded(record.get("export_dir"), record.get("machine"), backend, o.exact_top)
        if figures is not None and not pick_bfloat16(figures, o.exact_max_share)[0]:  # decided on an earlier load
            reason = pick_bfloat16(figures, o.exact_max_share)[1]
            return {**record, "reason": f"{record['reason']}; {reason}",
                    "bfloat16": {"tried": True, "flags": flags, "serves": False, "reason": reason, "measured": figures}}
        float32 = self._auto_torch or self._torch_scorer(resolved, "cpu", "float32")
        self._auto_torch = None
        reduced = float32.reduced_copy("bfloat16")
        if backend == "torch":
            exact = float32
        else:
            self._auto_exported = load_exported(self._name, resolved.path, resolved.origin,
                                                exported_options(o, backend))
            exact = self._auto_exported.scorer

        def batch(b: str) -> int:
            return o.batch_size if o.batch_size is not None else default_batch("cpu", b)

        def lengths(pairs: list[tuple[str, str]]) -> list[int]:
            return [len(ids) for ids in reduced.tokenizer([q for q, _ in pairs], [t for _, t in pairs],
                                                          truncation=True, max_length=self.max_length)["input_ids"]]

        if figures is None:
            progress.warning("reranker %s: this CPU has %s: timing bfloat16 + exact re-scoring against %s (once per "
                             "machine)", self._name, " and ".join(flags), NAMES[backend])
            figures = measure_bfloat16(reduced, exact, batch, lengths, o.exact_top)
            keep(record.get("export_dir"), record.get("machine"), figures)
        serves, reason = pick_bfloat16(figures, o.exact_max_share)
        progress.warning("reranker %s: %s", self._name, reason)
        trial = {"tried": True, "flags": flags, "serves": serves, "reason": reason, "measured": figures}
        out = {**record, "reason": f"{record['reason']}; {reason}", "bfloat16": trial}
        if not serves:
            self._auto_torch = float32 if backend == "torch" else None  # serves, or its memory goes
            return out
        self._auto_exported = None
        self._near_ties = NearTies(exact, figures["margin"], o.exact_top, o.exact_max_share,
                                   figures["rescored_per_query"], figures["speed_ratio"], "bfloat16")
        self._exact_batch = batch(exact.backend)
        self._agreement = figures["agreement"]
        self._details = {**reduced.describe(), "cpu_bf16_native": True, "float32_backend": exact.backend}
        self._auto_served = reduced
        return {**out, "backend": "torch", "dtype": "bfloat16", "float32_backend": backend}

    def _torch_scorer(self, resolved, device: str, dtype: str) -> TorchScorer:
        o = self.options
        try:
            return TorchScorer(resolved.path, device, dtype, self.max_length, o.allow_remote_code, o.threads)
        except Exception as exc:  # tokenizer or weights that transformers cannot read
            raise RerankerLoadError(f"reranker {self._name!r} could not be loaded from {resolved.path} "
                                    f"({exc.__class__.__name__}: {str(exc)[:200]}); run "
                                    f"`kb models check {resolved.path}`") from exc

    def _build(self, resolved, choice: DeviceChoice) -> Scorer:
        o = self.options
        backend = self._auto_backend(resolved, choice) if o.backend == "auto" else o.backend
        if self._auto_served is not None:  # backend auto: bfloat16 + exact (`_auto_bfloat16` set it all up)
            scorer, self._auto_served = self._auto_served, None
            return scorer
        if backend != "torch":
            from .exported import exported_options, load_exported

            self._auto_torch = None  # timed against ONNX Runtime and slower: its memory goes
            built, self._auto_exported = self._auto_exported, None
            if built is None:
                built = load_exported(self._name, resolved.path, resolved.origin, exported_options(o, backend))
            self._near_ties, self._quantized, self._agreement = built.near_ties, built.quantized, built.agreement
            self._warning, self._details = built.warning, built.details
            return built.scorer
        cpu_bf16 = choice.device == "cpu" and choice.dtype == "bfloat16"
        scorer, self._auto_torch = self._auto_torch, None
        if scorer is None:
            scorer = self._torch_scorer(resolved, choice.device, "float32" if cpu_bf16 else choice.dtype)
        self._details = scorer.describe()
        return self._to_bfloat16(scorer) if cpu_bf16 else scorer

    def _to_bfloat16(self, float32: TorchScorer) -> Scorer:
        """A bfloat16 copy of a float32 CPU model, served under the reduced-precision policy: both score the check
        set and `rerank.engines.precision.decide` chooses."""
        from rerank.validation.agreement import check_set, compare

        from .precision import check_set_rescored, decide

        pairs, groups = check_set()
        reduced = float32.reduced_copy("bfloat16")
        seconds = {}
        scores = {}
        for label, scorer in (("float32", float32), ("bfloat16", reduced)):
            scorer.predict(pairs[:2])  # warm-up: the first call pays allocations, not the arithmetic timed below
            t0 = time.perf_counter()
            scores[label] = scorer.predict(pairs)
            seconds[label] = time.perf_counter() - t0
        agreement = compare(scores["float32"], scores["bfloat16"], groups)
        top = self.options.exact_top
        served = decide(self._name, "bfloat16", agreement, reduced, lambda: float32, self.options, "float32",
                        rescored_on_check=lambda margin: check_set_rescored(scores["bfloat16"], groups, top, margin),
                        speed_ratio=seconds["bfloat16"] / seconds["float32"] if seconds["float32"] > 0 else None)
        native = cpu_has_native_bf16()
        self._near_ties, self._agreement = served.near_ties, agreement.to_dict()
        self._warning = served.warning or (None if native else "this CPU has no AMX-BF16 or AVX512-BF16: bfloat16 "
                                           "is emulated and slower than float32; use --dtype float32")
        self._details = {**served.scorer.describe(), "cpu_bf16_native": native}
        return served.scorer

    def _require_loaded(self) -> None:
        if self._model is None:
            raise RuntimeError(f"reranker {self._name!r} is not loaded; call load() first")

    # ---- scoring -----------------------------------------------------------------------------------------------
    def windows(self, query: str, texts: Sequence[str]) -> list[list[Window]]:
        """The windows each (cleaned) text is scored as; a text that fits is one window holding all of it."""
        self.load()
        query = check_query(query)
        tok = self._model.tokenizer
        with self._lock:  # a fast tokenizer is not safe to share between threads ("Already borrowed")
            return [split_windows(tok, query, text, self.max_length, index=i)
                    for i, text in enumerate(prepare_texts(texts))]

    def prepare(self, query: str, texts: Sequence[str]) -> Prepared:
        """One request made ready for `score_prepared`: the query checked, the texts cleaned and windowed. Raises
        what `score()` raises for a bad query or texts, before any forward pass. Loads the model on first use."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string; wrap it in a list")
        per_text = self.windows(query, texts)
        return Prepared(check_query(query), tuple(tuple(ws) for ws in per_text))

    def score(self, query: str, texts: Sequence[str]) -> list[tuple[float, float]]:
        """(raw logit, sigmoid) per text, Python floats, input order. Loads the model on first use."""
        return self.score_prepared([self.prepare(query, texts)])[0]

    def score_requests(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[list[tuple[float, float]]]:
        """`score(query, texts)` of each (query, texts) request, in request order, with the windows of all of them
        scored together: length-sorted across requests, so pairs of different requests share forward passes. Each
        request's scores equal its own `score()`'s up to the float noise of a different batch composition."""
        return self.score_prepared([self.prepare(query, texts) for query, texts in requests])

    def score_prepared(self, requests: Sequence[Prepared]) -> list[list[tuple[float, float]]]:
        """`score_requests` of requests already made ready by `prepare` (a batcher prepares each in its caller's
        thread and counts its tokens before choosing whom to score together)."""
        self._require_loaded()
        pairs = [(r.query, w.text) for r in requests for ws in r.windows for w in ws]
        lengths = [w.n_tokens for r in requests for ws in r.windows for w in ws]
        nt = self._near_ties
        if nt is not None and pairs and not nt.reduce([len(r.windows) for r in requests]):
            # re-scoring would cost more than the reduced pass saves: float32 scores every candidate, once
            nt.direct(sum(len(r.windows) for r in requests))
            raws = self._run(pairs, lengths, exact=True)
            nt = None
        else:
            t0 = time.perf_counter()
            raws = self._run(pairs, lengths) if pairs else []
            reduced_s = time.perf_counter() - t0
        exact_work = {"s": 0.0, "tokens": 0}

        def exact_run(query: str, ws: list[Window]) -> list[float]:
            t = time.perf_counter()
            got = self._run([(query, w.text) for w in ws], [w.n_tokens for w in ws], exact=True)
            exact_work["s"] += time.perf_counter() - t
            exact_work["tokens"] += sum(w.n_tokens for w in ws)
            return got

        out, start = [], 0
        for r in requests:  # pairs keep each request's windows together, in order
            mine = aggregate_windows(r.windows, raws[start:start + r.n_pairs], self.long_passage)
            start += r.n_pairs
            if nt is not None and mine:  # the top order becomes float32's (rerank.engines.precision)
                mine = nt.rescore(mine, lambda again, r=r: score_windows(
                    [r.windows[i] for i in again], lambda ws, r=r: exact_run(r.query, ws), self.long_passage))
            out.append([(raw, sigmoid(raw)) for raw in mine])
        if nt is not None:
            nt.observe_speed(reduced_s, sum(lengths), exact_work["s"], exact_work["tokens"])
        return out

    def _run(self, pairs: list[tuple[str, str]], lengths: list[int], exact: bool = False) -> list[float]:
        """Raw scores of (query, window text) `pairs` of `lengths` tokens in length-sorted batches: by the serving
        scorer, or (`exact`) by the float32 one of the near-tie re-scorer (on the CPU, so without the OOM
        fallback)."""
        with self._lock:
            if exact:
                return score_in_batches(pairs, lengths, self._exact_batch or self._batch_limit,
                                        self._near_ties.exact.predict).scores
            try:
                run = score_in_batches(pairs, lengths, self._batch_limit, self._model.predict)
            except CudaOOMExhausted as exc:
                self._fall_back_to_cpu(str(exc))
                run = score_in_batches(pairs, lengths, self._batch_limit, self._model.predict)
            self._oom_halvings += run.halvings
            self._batch_limit = run.batch_size
            return run.scores

    def _fall_back_to_cpu(self, why: str) -> None:
        import torch

        from retrieval.device import choose_device

        cpu = choose_device("cpu", "float32")
        reason = f"{why}; fell back to CPU float32 (was {self.device}/{self.dtype})"
        warnings.warn(f"reranker {self._name!r}: {reason}", RuntimeWarning, stacklevel=3)
        log.warning("reranker %s: %s", self._name, reason)
        self._model.to_cpu()  # only the torch backend runs on CUDA
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self._choice = DeviceChoice(**{**cpu.to_dict(), "reason": reason})
        self._fallback = reason
        self.batch_size = self._batch_limit = self.options.batch_size or CPU_BATCH
