"""`CrossEncoderReranker`: an encoder cross-encoder (bge-reranker-v2-m3, bge-reranker-base/large, ms-marco, any
fine-tuned folder) through sentence-transformers' `CrossEncoder`, keeping the raw logit.

- Cheap `__init__` (validates the knobs, imports no torch); `load()` resolves the model (folder, models/<name>/,
  HF cache, hub), picks device and dtype once (`retrieval.device.choose_device`: GPU → float16, CPU → float32)
  and checks that the weight file really holds every tensor the config needs.
- Reduced precision on the CPU, opt-in: `dtype="bfloat16"` (fast where the CPU has AMX/AVX512-BF16) or int8
  (`backend="onnx", quantize=True`). With `exact_top=N` (default 10) the float32 model is kept too and the near-ties
  of the top N are re-scored by it (`rerank.exact`), so the top-N order is float32's; with `exact_top=0` the reduced
  copy serves alone, and only if it keeps every top-10 order of the check set.
- Backend (`rerank.backends`): `torch` (default, any device), or on the CPU `onnx` (ONNX Runtime on a cached,
  parity-checked export; `quantize=True` adds int8, used only if its agreement check passed) or `openvino`.
- `score(query, texts)`: candidate text HTML-cleaned; long passages split into windows with the query whole
  (`rerank.windows`); pairs scored in length-sorted batches; the raw logit is kept (identity activation) and
  `score = sigmoid(raw)`; Python floats in input order.
- CUDA out of memory: the batch is halved and retried (bounded); at batch size 1 the model moves to CPU float32
  for the rest of the process, with a warning, and `info()["fallback"]` says so.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rerank.batching import score_in_batches
from rerank.errors import CudaOOMExhausted, RerankerLoadError
from rerank.kinds import architecture, is_llm_reranker, num_labels, position_limit, read_config
from rerank.params import check_batch_size, check_long_passage, check_max_length
from rerank.text import check_query, prepare_texts
from rerank.types import sigmoid
from rerank.windows import Window, aggregate, split_windows

log = logging.getLogger(__name__)

_DEVICES_HELP = "auto, cpu, cuda or cuda:N"
CPU_BATCH, GPU_BATCH = 8, 32  # pairs per forward pass when batch_size is None
_DTYPES = ("auto", "float32", "float16", "bfloat16")


def check_device_dtype(device: object, dtype: object) -> None:
    """Cheap string checks (no torch import); `choose_device` checks CUDA availability at load."""
    from rerank.errors import RerankerParameterError

    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda")
                                           or (device.startswith("cuda:") and device[5:].isdigit())):
        raise RerankerParameterError("device", device, _DEVICES_HELP, "pass --device auto (GPU if present) or cpu")
    if dtype not in _DTYPES:
        raise RerankerParameterError("dtype", dtype, ", ".join(_DTYPES),
                                     "pass --dtype auto (float16 on GPU, float32 on CPU)")


class CrossEncoderReranker:
    """Encoder cross-encoder reranker. See the module docstring; `Reranker` protocol in `rerank.protocol`."""

    kind = "cross-encoder"

    def __init__(self, name_or_path: str, device: str = "auto", dtype: str = "auto", batch_size: int | None = None,
                 max_length: int = 512, long_passage: str = "max", models_dir: str | Path = "models",
                 allow_remote_code: bool = False, backend: str = "torch", quantize: bool = False,
                 threads: int | None = None, quantize_max_shift: float = 0.05, quantize_policy: str = "refuse",
                 exact_top: int = 10):
        if not isinstance(name_or_path, str) or not name_or_path.strip() or name_or_path.lower() == "none":
            from rerank.errors import RerankerParameterError

            raise RerankerParameterError("reranker", name_or_path, "a hub name, a local folder or models/<name>",
                                         "pass e.g. --reranker BAAI/bge-reranker-v2-m3 or a fine-tuned folder")
        check_device_dtype(device, dtype)
        from rerank.backends import check_backend, check_threads

        self.backend_setting = check_backend(backend)
        if not isinstance(quantize, bool):
            from rerank.errors import RerankerParameterError

            raise RerankerParameterError("quantize", quantize, "true or false",
                                         "set KB_RERANK_QUANTIZE=true to use int8 with --backend onnx")
        self.quantize = quantize
        self.threads = check_threads(threads)
        if not isinstance(quantize_max_shift, (int, float)) or not 0.0 <= quantize_max_shift <= 1.0:
            from rerank.errors import RerankerParameterError

            raise RerankerParameterError("quantize_max_shift", quantize_max_shift, "a score shift from 0.0 to 1.0",
                                         "leave it at 0.05")
        self.quantize_max_shift = float(quantize_max_shift)
        if quantize_policy not in ("refuse", "warn"):
            from rerank.errors import RerankerParameterError

            raise RerankerParameterError("quantize_policy", quantize_policy, "refuse or warn",
                                         "refuse (default) serves float32 when int8 fails its agreement check")
        self.quantize_policy = quantize_policy
        if not isinstance(exact_top, int) or isinstance(exact_top, bool) or not 0 <= exact_top <= 1000:
            from rerank.errors import RerankerParameterError

            raise RerankerParameterError("exact_top", exact_top, "an integer from 0 (off) to 1000",
                                         "leave it at 10: bfloat16/int8 near-ties in the top 10 are re-scored in "
                                         "float32 (KB_RERANK_EXACT_TOP)")
        self.exact_top = exact_top
        self._name = name_or_path
        self._device_arg, self._dtype_arg = device, dtype
        # None: chosen with the device at load, CPU_BATCH on a CPU (smaller batches pad less, and CPU matrix products
        # are as efficient at 8 pairs as at 32: docs/PERFORMANCE.md), GPU_BATCH on a GPU
        self._batch_arg = None if batch_size is None else check_batch_size(batch_size)
        self.batch_size = self._batch_arg or GPU_BATCH
        self.max_length = check_max_length(max_length)
        self.long_passage = check_long_passage(long_passage)
        self.models_dir = Path(models_dir)
        self.allow_remote_code = bool(allow_remote_code)
        self._lock = threading.RLock()
        self._model = None  # the scorer (rerank.backends): TorchScorer, OnnxScorer or OpenVinoScorer
        self._backend_info: dict[str, Any] = {}
        self._resolved = None
        self._config: dict[str, Any] | None = None
        self._choice = None
        self._batch_limit = self.batch_size
        self._oom_halvings = 0
        self._fallback: str | None = None
        self._load_ms: float | None = None
        # with a reduced-precision scorer and exact_top > 0: the float32 scorer for near-ties (rerank.exact)
        self._exact = None
        self._exact_margin: float | None = None
        self._exact_stats = {"calls": 0, "candidates": 0, "rescored": 0}

    # ---- description -------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def path(self) -> str | None:
        return self._resolved.path if self._resolved else None

    @property
    def origin(self) -> str | None:
        return self._resolved.origin if self._resolved else None

    @property
    def architecture(self) -> str | None:
        return architecture(self._config)

    @property
    def device_choice(self):
        """The `retrieval.device.DeviceChoice` made at load (None before)."""
        return self._choice

    @property
    def device(self) -> str | None:
        return self._choice.device if self._choice else None

    @property
    def dtype(self) -> str | None:
        return self._choice.dtype if self._choice else None

    @property
    def model_max_length(self) -> int | None:
        return position_limit(self._config)

    @property
    def tokenizer(self):
        self._require_loaded()
        return self._model.tokenizer

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

    def info(self) -> dict[str, Any]:
        return {
            "name": self._name, "kind": self.kind, "loaded": self.loaded, "path": self.path, "origin": self.origin,
            "architecture": self.architecture, "model_type": (self._config or {}).get("model_type"),
            "num_labels": num_labels(self._config), "max_length": self.max_length,
            "model_max_length": self.model_max_length, "batch_size": self.batch_size,
            "effective_batch_size": self._batch_limit, "oom_halvings": self._oom_halvings,
            "long_passage": self.long_passage, "device": self.device, "dtype": self.dtype,
            "device_choice": self._choice.to_dict() if self._choice else None, "fallback": self._fallback,
            "load_ms": self._load_ms, "allow_remote_code": self.allow_remote_code,
            "backend_setting": self.backend_setting, "quantize": self.quantize, **self._backend_info,
            "exact_top": self.exact_top if self._exact is not None else 0, "exact_margin": self._exact_margin,
            "exact_rescored": dict(self._exact_stats) if self._exact is not None else None,
        }

    def __repr__(self) -> str:
        return f"CrossEncoderReranker({self._name!r}, device={self.device or self._device_arg!r}, loaded={self.loaded})"

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
                resolved = resolve_model(self._name, self.models_dir)
            except ModelNotAvailable as exc:
                raise RerankerLoadError(f"reranker {self._name!r} cannot be loaded: {exc}") from exc
            config = read_config(resolved.path)
            if config is None:
                raise RerankerLoadError(f"reranker {self._name!r}: {Path(resolved.path) / 'config.json'} is missing "
                                        f"or not valid JSON; run `kb models check {resolved.path}`")
            if is_llm_reranker(self._name, config):
                raise RerankerLoadError(f"reranker {self._name!r} is a causal LM ({architecture(config)}); load it "
                                        "with rerank.llm.LLMReranker (rerank.factory.create_reranker does this)")
            arch = architecture(config) or "?"
            if not arch.endswith("ForSequenceClassification") or num_labels(config) != 1:
                raise RerankerLoadError(
                    f"reranker {self._name!r} is {arch} with num_labels={num_labels(config)}; a cross-encoder "
                    "reranker is *ForSequenceClassification with one label (one relevance logit); "
                    f"run `kb models check {resolved.path}`")
            check_max_length(self.max_length, position_limit(config), self._name)
            self._check_weights(resolved.path, config)
            choice = self._choose_device()
            self._model = self._build(resolved, config, choice.device, choice.dtype)
            served = getattr(self._model, "dtype", choice.dtype)  # the torch scorer's weights
            if choice.dtype == "bfloat16" and served != choice.dtype:  # refused by its agreement check
                choice = type(choice)(**{**choice.to_dict(), "dtype": served,
                                         "reason": f"{choice.reason}; bfloat16 failed its agreement check"})
            self._resolved, self._config, self._choice = resolved, config, choice
            if self._batch_arg is None:
                self.batch_size = self._batch_limit = GPU_BATCH if choice.device.startswith("cuda") else CPU_BATCH
            self._load_ms = round((time.perf_counter() - started) * 1000, 1)
            log.info("reranker %s loaded from %s on %s/%s (%s)", self._name, resolved.path, choice.device,
                     choice.dtype, choice.reason)
            return self

    def _check_weights(self, path: str, config: dict[str, Any]) -> None:
        """Refuse a folder whose weights lack tensors the config needs (transformers would fill them randomly)."""
        from rerank.weights import WeightsError, compare_shapes, file_tensor_shapes, find_weight_files

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
            found = file_tensor_shapes(files)
            from transformers import AutoConfig

            hf_config = AutoConfig.from_pretrained(path, trust_remote_code=self.allow_remote_code)
            from rerank.weights import expected_tensor_shapes

            mismatch = compare_shapes(found, expected_tensor_shapes(hf_config))
        except WeightsError as exc:
            raise RerankerLoadError(f"reranker {self._name!r}: {exc}") from exc
        if not mismatch.ok:
            raise RerankerLoadError(f"reranker {self._name!r}: {files[0].name} does not match config.json: "
                                    f"{mismatch.describe()}; run `kb models check {path}`")

    def _choose_device(self):
        """Device and dtype; the ONNX Runtime and OpenVINO backends run on the CPU in float32."""
        from rerank.backends import CPU_ONLY
        from retrieval.device import choose_device

        backend = self.backend_setting
        if backend not in CPU_ONLY:
            return choose_device(self._device_arg, self._dtype_arg)
        from rerank.errors import RerankerParameterError

        if self._device_arg.startswith("cuda"):
            raise RerankerParameterError("device", self._device_arg, f"cpu or auto with backend={backend}",
                                         "use --backend torch on a GPU (FP16), or --device cpu")
        if self._dtype_arg not in ("auto", "float32"):
            raise RerankerParameterError("dtype", self._dtype_arg, f"auto or float32 with backend={backend}",
                                         "for int8 set quantize (KB_RERANK_QUANTIZE=true) instead")
        cpu = choose_device("cpu", "float32")
        return type(cpu)(**{**cpu.to_dict(), "reason": f"backend {backend} runs on the CPU in float32"})

    def _build(self, resolved, config: dict[str, Any], device: str, dtype: str):
        from rerank.backends import TorchScorer

        backend = self.backend_setting
        path = resolved.path
        try:
            if backend == "torch":
                cpu_bf16 = device == "cpu" and dtype == "bfloat16"
                scorer = TorchScorer(path, device, "float32" if cpu_bf16 else dtype, self.max_length,
                                     self.allow_remote_code, self.threads)
                self._backend_info = scorer.describe()
                if cpu_bf16:
                    scorer = self._to_bfloat16(scorer, path)
                return scorer
        except Exception as exc:  # tokenizer or weights that transformers cannot read
            raise RerankerLoadError(f"reranker {self._name!r} could not be loaded from {path} "
                                    f"({exc.__class__.__name__}: {str(exc)[:200]}); run `kb models check {path}`"
                                    ) from exc
        return self._build_exported(resolved, backend)

    def _use_exact(self, exact_scorer, agreement) -> None:
        from rerank.exact import margin_for

        self._exact = exact_scorer
        self._exact_margin = margin_for(agreement.max_raw_diff)

    def _failed_check(self, what: str, agreement, fallback: str) -> tuple[bool, str]:
        """Warn (and log) that a reduced copy failed its agreement check; (refused, the warning for info())."""
        refuse = self.quantize_policy == "refuse"
        warning = (f"{what} {'refused' if refuse else 'used although it failed its check'}: on the check set it "
                   f"changed the top-{agreement.top_k} order of {agreement.queries_with_changed_top_k}/"
                   f"{agreement.queries} queries, max score shift {agreement.max_score_diff:.4f} (allowed "
                   f"{self.quantize_max_shift}); "
                   + (f"serving {fallback}" if refuse else "scores differ from float32"))
        warnings.warn(f"reranker {self._name!r}: {warning}", RuntimeWarning, stacklevel=6)
        log.warning("reranker %s: %s", self._name, warning)
        return refuse, warning

    def _to_bfloat16(self, scorer, path: str):
        """A bfloat16 copy of a float32 CPU model. The check set is scored in both. With `exact_top` the float32
        model stays for the near-ties and the check's largest shift sets their margin (rerank.exact). Without, the
        bfloat16 copy serves only if every query's top-10 order is identical and the score shift is within
        `quantize_max_shift` (the int8 rule); otherwise (policy refuse) the float32 model is loaded again, `info()`
        says why and `dtype` reports float32."""
        from rerank.agreement import check_set, compare
        from rerank.backends import TorchScorer, cpu_has_native_bf16

        pairs, groups = check_set()
        reference = scorer.predict(pairs)
        exact = None
        if self.exact_top:  # keep the float32 model for near-ties; the bfloat16 copy is half its size again
            import copy

            exact, scorer = scorer, copy.deepcopy(scorer)
        scorer.cast("bfloat16")
        agreement = compare(reference, scorer.predict(pairs), groups)
        native = cpu_has_native_bf16()
        warning = None if native else ("this CPU has no AMX-BF16 or AVX512-BF16: bfloat16 is emulated and slower "
                                       "than float32; use --dtype float32")
        if exact is not None:
            self._use_exact(exact, agreement)
        elif not agreement.acceptable(self.quantize_max_shift):
            refuse, warning = self._failed_check("bfloat16", agreement, "float32")
            if refuse:
                scorer = TorchScorer(path, "cpu", "float32", self.max_length, self.allow_remote_code, self.threads)
        self._backend_info = {**scorer.describe(), "bf16_agreement": agreement.to_dict(), "cpu_bf16_native": native,
                              "backend_warning": warning}
        return scorer

    def _build_exported(self, resolved, backend: str):
        """ONNX Runtime or OpenVINO on the cached export (made and parity-checked on first use)."""
        from transformers import AutoTokenizer

        from rerank.backends import OnnxScorer, OpenVinoScorer, require
        from rerank.onnx_export import ensure_exported, ensure_quantized, export_dir

        require(backend)
        path = resolved.path
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True,
                                                      trust_remote_code=self.allow_remote_code)
        except Exception as exc:
            raise RerankerLoadError(f"reranker {self._name!r}: tokenizer in {path} could not be loaded "
                                    f"({exc.__class__.__name__}: {str(exc)[:200]}); run `kb models check {path}`"
                                    ) from exc
        folder = export_dir(path, resolved.origin, self._name, self.models_dir)
        exported = ensure_exported(path, folder, tokenizer, self.max_length, self.allow_remote_code)
        file, warning, agreement = exported.fp32_file, None, None
        if self.quantize:
            if backend != "onnx":
                warning = f"quantize applies to backend onnx only; {backend} runs the float32 export"
            else:
                exported = ensure_quantized(exported, tokenizer, self.max_length)
                agreement = exported.int8_agreement
                if self.exact_top:  # near-ties in the top are re-scored by the float32 export
                    file = exported.int8_file
                    self._use_exact(OnnxScorer(exported.fp32_file, tokenizer, exported.input_names, self.max_length,
                                               self.threads), agreement)
                elif agreement.acceptable(self.quantize_max_shift):
                    file = exported.int8_file
                else:
                    refuse, warning = self._failed_check("int8 model", agreement, "the float32 ONNX model")
                    file = exported.fp32_file if refuse else exported.int8_file
        cls = OnnxScorer if backend == "onnx" else OpenVinoScorer
        scorer = cls(file, tokenizer, exported.input_names, self.max_length, self.threads)
        self._backend_info = {**scorer.describe(), "quantized": file == exported.int8_file,
                              "export_dir": str(exported.folder),
                              "export_parity_max_raw_diff": exported.manifest["parity"]["max_raw_diff"],
                              "int8_agreement": agreement.to_dict() if agreement else None,
                              "backend_warning": warning}
        return scorer

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

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Raw logits of (query, text) pairs as given: no cleaning, no windows; each pair must fit max_length."""
        self.load()
        from rerank.windows import pair_lengths

        with self._lock:  # the tokenizer is shared; see windows()
            lengths = [pair_lengths(self._model.tokenizer, q, [t])[0] for q, t in pairs]
        too_long = [i for i, n in enumerate(lengths) if n > self.max_length]
        if too_long:
            from rerank.errors import RerankerParameterError

            raise RerankerParameterError("pairs", f"pair {too_long[0]} of {lengths[too_long[0]]} tokens",
                                         f"at most max_length={self.max_length} tokens per pair",
                                         "use score() which splits long passages into windows")
        raws = self._run(list(pairs), lengths)
        return self._rescore_near_ties(raws, lambda again: self._run_exact([pairs[i] for i in again],
                                                                            [lengths[i] for i in again]))

    def score(self, query: str, texts: Sequence[str]) -> list[tuple[float, float]]:
        """(raw logit, sigmoid) per text, Python floats, input order. Loads the model on first use."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string; wrap it in a list")
        per_text = self.windows(query, texts)
        if not per_text:
            return []
        query = check_query(query)
        raws = self._aggregate(query, per_text, self._run)
        raws = self._rescore_near_ties(raws, lambda again: self._aggregate(query, [per_text[i] for i in again],
                                                                            self._run_exact))
        return [(raw, sigmoid(raw)) for raw in raws]

    def _rescore_near_ties(self, raws: list[float], rescore) -> list[float]:
        """With a reduced-precision scorer: replace the near-ties of the top `exact_top` (rerank.exact) by their
        float32 scores, `rescore(indices)`, so that the top order is float32's. Without one: `raws` unchanged."""
        if self._exact is None:
            return raws
        from rerank.exact import near_ties

        again = near_ties(raws, self.exact_top, self._exact_margin)
        if again:
            for i, raw in zip(again, rescore(again), strict=True):
                raws[i] = raw
        with self._lock:
            self._exact_stats["calls"] += 1
            self._exact_stats["candidates"] += len(raws)
            self._exact_stats["rescored"] += len(again)
        return raws

    def _aggregate(self, query: str, per_text: list[list[Window]], run) -> list[float]:
        """One raw score per text: its windows scored by `run` and combined by `long_passage`."""
        flat = [w for ws in per_text for w in ws]
        raws = run([(query, w.text) for w in flat], [w.n_tokens for w in flat])
        out, start = [], 0
        for ws in per_text:  # flat keeps each text's windows together, in order
            out.append(float(aggregate(raws[start:start + len(ws)], self.long_passage)))
            start += len(ws)
        return out

    def _predict(self, batch: list[tuple[str, str]]) -> list[float]:
        return self._model.predict(batch)

    def _run(self, pairs: list[tuple[str, str]], lengths: list[int]) -> list[float]:
        with self._lock:
            try:
                run = score_in_batches(pairs, lengths, self._batch_limit, self._predict)
            except CudaOOMExhausted as exc:
                self._fall_back_to_cpu(str(exc))
                run = score_in_batches(pairs, lengths, self._batch_limit, self._predict)
            self._oom_halvings += run.halvings
            self._batch_limit = run.batch_size
            return run.scores

    def _run_exact(self, pairs: list[tuple[str, str]], lengths: list[int]) -> list[float]:
        """Float32 raw scores from the exact scorer (CPU only, so no OOM fallback)."""
        with self._lock:
            return score_in_batches(pairs, lengths, self._batch_limit, self._exact.predict).scores

    def _fall_back_to_cpu(self, why: str) -> None:
        from retrieval.device import choose_device

        cpu = choose_device("cpu", "float32")
        reason = f"{why}; fell back to CPU float32 (was {self.device}/{self.dtype})"
        warnings.warn(f"reranker {self._name!r}: {reason}", RuntimeWarning, stacklevel=3)
        log.warning("reranker %s: %s", self._name, reason)
        import torch

        self._model.to_cpu()  # only the torch backend runs on CUDA
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self._choice = type(cpu)(**{**cpu.to_dict(), "reason": reason})
        self._fallback = reason
        self.batch_size = self._batch_limit = self._batch_arg or CPU_BATCH
