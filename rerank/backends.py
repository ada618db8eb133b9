"""Where a cross-encoder's forward pass runs: PyTorch, ONNX Runtime or OpenVINO. Same tokenizer, same raw logits.

- `torch`: sentence-transformers' `CrossEncoder` (SDPA attention, inference mode, padding to the longest pair of
  the batch). The only backend for CUDA (FP16 there).
- `onnx`: the model exported once to ONNX (`rerank.onnx_export`, cached next to the weights), run by ONNX Runtime
  on the CPU with all graph optimisations and one intra-op thread per core this process may use. With
  `quantize=True` the int8 dynamic-quantised copy is used, if it passed its agreement check.
- `openvino`: the same exported ONNX file compiled by OpenVINO for the CPU with float32 inference precision
  (OpenVINO would pick bfloat16 by itself on CPUs with AMX, which changes scores).
The default is `torch`: ONNX Runtime in float32 is not clearly faster than PyTorch on the CPU measured
(docs/PERFORMANCE.md), and int8 changes scores, so the faster paths are a choice, never a surprise.

Every scorer has `tokenizer`, `predict(pairs) -> list[float]` (raw logits, input order, one batch) and `describe()`.
Why not `CrossEncoder(..., backend="onnx")`: it needs optimum-onnx, which pins transformers < 4.58; this project
runs transformers 5, so the export (`torch.onnx.export`) and the session (`onnxruntime`) are used directly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rerank.errors import RerankerLoadError, RerankerParameterError

BACKENDS = ("torch", "onnx", "openvino")
CPU_ONLY = ("onnx", "openvino")
_INSTALL = {"onnx": "pip install 'kb-search[onnx]' (onnxruntime and onnx)",
            "openvino": "pip install 'kb-search[openvino]' (openvino, plus onnxruntime and onnx for the export)"}


def check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise RerankerParameterError("backend", backend, f"one of {', '.join(BACKENDS)}",
                                     "pass --backend torch (default), onnx or openvino (or set KB_RERANK_BACKEND)")
    return backend


def check_threads(threads: object) -> int | None:
    if threads is None:
        return None
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 1024:
        raise RerankerParameterError("threads", threads, "an integer from 1 to 1024, or None (one per core)",
                                     "leave it unset, or set KB_RERANK_THREADS to the cores the reranker may use")
    return threads


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def require(backend: str) -> None:
    """Raise RerankerLoadError naming the install command when the backend's runtime is not installed."""
    import importlib.util

    needed = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnxruntime", "onnx")}.get(backend, ())
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise RerankerLoadError(f"reranker backend {backend!r} needs {', '.join(missing)}: {_INSTALL[backend]}; "
                                "or use --backend torch")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX-BF16 or AVX512-BF16, read from /proc/cpuinfo): there
    oneDNN runs bfloat16 matrix products several times faster than float32; elsewhere bfloat16 is emulated, slower."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))


def tokenize(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int, names: Sequence[str]) -> dict:
    """int64 numpy inputs for a batch of (query, text) pairs, padded to the batch's longest pair."""
    import numpy as np

    enc = tokenizer([q for q, _ in pairs], [t for _, t in pairs], padding=True, truncation="longest_first",
                    max_length=max_length, return_tensors="np")
    return {name: np.asarray(enc[name], dtype=np.int64) for name in names}


class TorchScorer:
    """sentence-transformers `CrossEncoder` with the identity activation (raw logits)."""

    backend = "torch"

    def __init__(self, path: str, device: str, dtype: str, max_length: int, allow_remote_code: bool,
                 threads: int | None = None):
        import torch
        from sentence_transformers import CrossEncoder

        if threads is not None:  # process-wide in PyTorch; only when asked for
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.cross_encoder = CrossEncoder(path, device=device, max_length=max_length,
                                          activation_fn=torch.nn.Identity(), trust_remote_code=allow_remote_code,
                                          local_files_only=True, model_kwargs={"dtype": getattr(torch, dtype)})
        self.tokenizer = self.cross_encoder.tokenizer

    def predict(self, pairs: list[tuple[str, str]]) -> list[float]:
        import torch

        scores = self.cross_encoder.predict(pairs, batch_size=len(pairs), activation_fn=torch.nn.Identity(),
                                            show_progress_bar=False, convert_to_numpy=True)
        return [float(s) for s in scores.reshape(-1).tolist()]

    def to_cpu(self) -> None:
        import torch

        self.cross_encoder.to(device="cpu", dtype=torch.float32)

    @property
    def dtype(self) -> str:
        """The weights' dtype now: float32, float16 or bfloat16."""
        return str(self.cross_encoder.model.dtype).removeprefix("torch.")

    def cast(self, dtype: str) -> None:
        """Cast the weights in place (float32 → bfloat16 on a CPU; one way: the rounding is not undone)."""
        import torch

        self.cross_encoder.model.to(dtype=getattr(torch, dtype))

    def describe(self) -> dict[str, Any]:
        model = self.cross_encoder.model
        return {"backend": self.backend, "threads": self.threads,
                "attention": getattr(model.config, "_attn_implementation", None)}


class _ExportedScorer:
    """A runtime for the exported ONNX file: tokenizer, inputs and threads are shared; `_open` loads the file and
    `_infer` runs one batch of numpy inputs to a logits array."""

    backend = ""
    _cannot_open = ""  # "<runtime> could not <verb>", for the load error
    _fix = ""  # what the user can do when the file cannot be opened

    def __init__(self, onnx_file: Path, tokenizer, input_names: Sequence[str], max_length: int,
                 threads: int | None = None):
        self.threads = threads if threads is not None else available_cores()
        self.file = Path(onnx_file)
        self.tokenizer = tokenizer
        self.input_names = list(input_names)
        self.max_length = max_length
        try:
            self._open()
        except Exception as exc:  # a truncated or foreign file
            raise RerankerLoadError(f"{self._cannot_open} {onnx_file} ({exc.__class__.__name__}: {str(exc)[:200]}); "
                                    + self._fix.format(folder=self.file.parent)) from exc

    def _open(self) -> None:
        raise NotImplementedError

    def _infer(self, inputs: dict):
        raise NotImplementedError

    def predict(self, pairs: list[tuple[str, str]]) -> list[float]:
        logits = self._infer(tokenize(self.tokenizer, pairs, self.max_length, self.input_names))
        return [float(s) for s in logits.reshape(-1).tolist()]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "threads": self.threads, "file": str(self.file)}


class OnnxScorer(_ExportedScorer):
    """An exported ONNX file run by ONNX Runtime on the CPU."""

    backend = "onnx"
    _cannot_open = "ONNX Runtime could not open"
    _fix = "delete {folder} to export it again"

    def _open(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1  # one graph at a time; parallelism is inside the matrix products
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # idle threads sleep instead of spinning: the CPU is shared with the embedder, the API and other processes
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.file), opts, providers=["CPUExecutionProvider"])

    def _infer(self, inputs: dict):
        return self.session.run(None, inputs)[0]


class OpenVinoScorer(_ExportedScorer):
    """The exported ONNX file compiled by OpenVINO for the CPU, float32 inference precision."""

    backend = "openvino"
    _cannot_open = "OpenVINO could not compile"
    _fix = "use --backend onnx or torch"

    def _open(self) -> None:
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(self.file), "CPU", {
            "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY"})

    def _infer(self, inputs: dict):
        return self.compiled(inputs)[self.compiled.output(0)]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "inference_precision": "f32"}
