"""`CrossEncoderReranker`: an encoder cross-encoder (bge-reranker-v2-m3, bge-reranker-base/large, ms-marco, any
fine-tuned folder) through sentence-transformers' `CrossEncoder`, keeping the raw logit.

- Cheap `__init__` (validates the knobs, imports no torch); `load()` resolves the model (folder, models/<name>/,
  HF cache, hub), picks device and dtype once (`retrieval.device.choose_device`: GPU → float16, CPU → float32)
  and checks that the weight file really holds every tensor the config needs.
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

    def __init__(self, name_or_path: str, device: str = "auto", dtype: str = "auto", batch_size: int = 32,
                 max_length: int = 512, long_passage: str = "max", models_dir: str | Path = "models",
                 allow_remote_code: bool = False, backend: str = "torch", quantize: bool = False,
                 threads: int | None = None, quantize_max_shift: float = 0.05, quantize_policy: str = "refuse"):
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
        self._name = name_or_path
        self._device_arg, self._dtype_arg = device, dtype
        self.batch_size = check_batch_size(batch_size)
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
            self._resolved, self._config, self._choice = resolved, config, choice
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
                scorer = TorchScorer(path, device, dtype, self.max_length, self.allow_remote_code, self.threads)
                self._backend_info = scorer.describe()
                return scorer
        except Exception as exc:  # tokenizer or weights that transformers cannot read
            raise RerankerLoadError(f"reranker {self._name!r} could not be loaded from {path} "
                                    f"({exc.__class__.__name__}: {str(exc)[:200]}); run `kb models check {path}`"
                                    ) from exc
        return self._build_exported(resolved, backend)

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
                if agreement.acceptable(self.quantize_max_shift):
                    file = exported.int8_file
                else:
                    refuse = self.quantize_policy == "refuse"
                    file = exported.fp32_file if refuse else exported.int8_file
                    warning = (f"int8 model {'refused' if refuse else 'used although it failed its check'}: on the "
                               f"check set it changed the top-{agreement.top_k} order of "
                               f"{agreement.queries_with_changed_top_k}/{agreement.queries} queries, max score "
                               f"shift {agreement.max_score_diff:.4f} (allowed {self.quantize_max_shift}); "
                               + ("serving the float32 ONNX model" if refuse else "scores differ from float32"))
                    warnings.warn(f"reranker {self._name!r}: {warning}", RuntimeWarning, stacklevel=4)
                    log.warning("reranker %s: %s", self._name, warning)
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
        return self._run(list(pairs), lengths)

    def score(self, query: str, texts: Sequence[str]) -> list[tuple[float, float]]:
        """(raw logit, sigmoid) per text, Python floats, input order. Loads the model on first use."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string; wrap it in a list")
        per_text = self.windows(query, texts)
        if not per_text:
            return []
        query = check_query(query)
        flat = [w for ws in per_text for w in ws]
        raws = self._run([(query, w.text) for w in flat], [w.n_tokens for w in flat])
        grouped: list[list[float]] = [[] for _ in per_text]
        for w, raw in zip(flat, raws, strict=True):
            grouped[w.index].append(raw)
        out = []
        for scores in grouped:
            raw = float(aggregate(scores, self.long_passage))
            out.append((raw, sigmoid(raw)))
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
        self._batch_limit = self.batch_size
