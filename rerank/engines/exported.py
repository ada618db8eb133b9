"""The cross-encoder exported once to ONNX (`rerank.validation.onnx_export`, cached next to the weights) and run on
the CPU by ONNX Runtime (`OnnxScorer`) or OpenVINO (`OpenVinoScorer`): the same tokenizer, the same raw logits.

- ONNX Runtime: all graph optimisations, one intra-op thread per core this process may use; with `quantize` the
  int8 dynamic-quantised copy, under the reduced-precision policy (`rerank.engines.precision`).
- OpenVINO: float32 inference precision (OpenVINO would pick bfloat16 by itself on CPUs with AMX, which changes
  scores).
Why not `CrossEncoder(..., backend="onnx")`: it needs optimum-onnx, one more package that pins transformers to a
narrow range of its own; the export (`torch.onnx.export`) and the session (`onnxruntime`) are used directly, so the
backend follows whatever transformers the rest of the project runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerank.errors import RerankerLoadError
from rerank.types import RerankerOptions

from .precision import NearTies, decide
from .scorers import Scorer, available_cores

_INSTALL = {"onnx": "pip install 'kb-search[onnx]' (onnxruntime and onnx)",
            "openvino": "pip install 'kb-search[openvino]' (openvino, plus onnxruntime and onnx for the export)"}


def require(backend: str) -> None:
    """Raise RerankerLoadError naming the install command when the backend's runtime is not installed."""
    import importlib.util

    needed = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnxruntime", "onnx")}.get(backend, ())
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise RerankerLoadError(f"reranker backend {backend!r} needs {', '.join(missing)}: {_INSTALL[backend]}; "
                                "or use --backend torch")


def tokenize(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int, names: Sequence[str]) -> dict:
    """int64 numpy inputs for a batch of (query, text) pairs, padded to the batch's longest pair."""
    import numpy as np

    enc = tokenizer([q for q, _ in pairs], [t for _, t in pairs], padding=True, truncation="longest_first",
                    max_length=max_length, return_tensors="np")
    return {name: np.asarray(enc[name], dtype=np.int64) for name in names}


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


@dataclass(frozen=True)
class ExportedModel:
    """What serves for the onnx/openvino backends: the scorer, its near-tie re-scorer (int8 with exact_top) and
    what `info()` reports."""

    scorer: Scorer
    near_ties: NearTies | None
    quantized: bool
    agreement: dict[str, Any] | None
    warning: str | None
    details: dict[str, Any]


def load_exported(name: str, path: str, origin: str | None, options: RerankerOptions) -> ExportedModel:
    """ONNX Runtime or OpenVINO on the cached export of the model at `path` (made and parity-checked on first use).
    With `quantize` (onnx only) the int8 copy serves under the reduced-precision policy."""
    from transformers import AutoTokenizer

    from rerank.validation.onnx_export import ensure_exported, ensure_quantized, export_dir

    backend = options.backend
    require(backend)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True,
                                                  trust_remote_code=options.allow_remote_code)
    except Exception as exc:
        raise RerankerLoadError(f"reranker {name!r}: tokenizer in {path} could not be loaded "
                                f"({exc.__class__.__name__}: {str(exc)[:200]}); run `kb models check {path}`"
                                ) from exc
    def onnx_runtime(file: Path, names: Sequence[str]) -> Scorer:  # the export's checks, whichever backend serves
        return OnnxScorer(file, tokenizer, names, options.max_length)

    folder = export_dir(path, origin, name, options.models_dir)
    exported = ensure_exported(path, folder, tokenizer, options.max_length, options.allow_remote_code,
                               open_scorer=onnx_runtime)
    cls = OnnxScorer if backend == "onnx" else OpenVinoScorer

    def open_file(file: Path) -> Scorer:
        return cls(file, tokenizer, exported.input_names, options.max_length, options.threads)

    scorer, near_ties, warning, agreement = None, None, None, None
    if options.quantize and backend != "onnx":
        warning = f"quantize applies to backend onnx only; {backend} runs the float32 export"
    elif options.quantize:
        exported = ensure_quantized(exported, open_scorer=onnx_runtime)
        agreement = exported.int8_agreement
        served = decide(name, "int8 model", agreement, open_file(exported.int8_file),
                        lambda: open_file(exported.fp32_file), options, "the float32 ONNX model")
        scorer, near_ties, warning = served.scorer, served.near_ties, served.warning
    if scorer is None:
        scorer = open_file(exported.fp32_file)
    quantized = getattr(scorer, "file", None) == exported.int8_file
    details = {**scorer.describe(), "export_dir": str(exported.folder),
               "export_parity_max_raw_diff": exported.manifest["parity"]["max_raw_diff"]}
    return ExportedModel(scorer, near_ties, quantized, agreement.to_dict() if agreement else None, warning, details)
