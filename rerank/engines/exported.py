"""The cross-encoder exported once to ONNX (`rerank.validation.onnx_export`, cached next to the weights) and run on
the CPU by ONNX Runtime (`OnnxScorer`) or OpenVINO (`OpenVinoScorer`): the same tokenizer, the same raw logits.

- ONNX Runtime: all graph optimisations, one intra-op thread per core this process may use; with `quantize` the
  int8 dynamic-quantised copy, under the reduced-precision policy (`rerank.engines.precision`).
- OpenVINO: float32 inference precision (OpenVINO would pick bfloat16 by itself on CPUs with AMX, which changes
  scores).
- Backend auto on a CPU (`choose_cpu_backend`): export once, time the float32 export under ONNX Runtime (and
  OpenVINO where it is installed) against PyTorch on the same pairs, each at its own CPU batch size, interleaved
  (`time_backends`), record the figures in the export's manifest per machine, and serve the fastest runtime only
  where it was faster than PyTorch (`AUTO_MIN_GAIN`) with the same top-10 orders; all are float32, so scores agree
  to ~1e-6 either way. (On a CPU with native bfloat16, `rerank.engines.auto` then weighs bfloat16 + exact.)
  The first load says what it does on the `kb.progress` logger (the CLI shows it), since the export takes
  minutes for a model of v2-m3's size.
Why not `CrossEncoder(..., backend="onnx")`: it needs optimum-onnx, one more package that pins transformers to a
narrow range of its own; the export (`torch.onnx.export`) and the session (`onnxruntime`) are used directly, so the
backend follows whatever transformers the rest of the project runs.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rerank.errors import RerankerLoadError
from rerank.types import RerankerOptions

from .precision import NearTies, decide
from .scorers import Scorer, available_cores, cpu_model, load_average

# one-time first-load steps (export, timing) a person waits for: not under `rerank`, whose logs the CLI quiets
progress = logging.getLogger("kb.progress")

# ONNX Runtime serves under backend auto when PyTorch took at least this many times as long on the timing pairs:
# below it the two are within the noise of a shared machine, and torch needs no export on disk
AUTO_MIN_GAIN = 1.05
TIMING_ROUNDS = 3

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


# ---- backend auto: the faster exact CPU backend, measured once per model and machine ------------------------------
def onnx_installed() -> bool:
    """Whether ONNX Runtime and onnx (for the export) can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def openvino_installed() -> bool:
    """Whether OpenVINO can be imported (it runs the same export, so backend auto times it too)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def timing_pairs(per_pair: int = 4) -> tuple[list[tuple[str, str]], list[int]]:
    """(query, passage) pairs for timing the backends, and each pair's query index: the check set's passages
    joined `per_pair` at a time, so pairs run to ~100–200 tokens, nearer real chunks than one sentence."""
    from rerank.validation.agreement import CHECK_QUERIES

    pairs, groups = [], []
    for g, (query, passages) in enumerate(CHECK_QUERIES):
        for start in range(0, len(passages), per_pair):
            joiner = "" if any("\u4e00" <= c <= "\u9fff" for c in passages[0]) else " "
            pairs.append((query, joiner.join(passages[start:start + per_pair])))
            groups.append(g)
    return pairs, groups


def machine_key(threads: int) -> str:
    """Which machine a timing belongs to: the CPU model and the threads the scorers used."""
    return f"{cpu_model() or 'unknown CPU'}, {threads} threads"


def time_backends(runners: dict[str, Callable[[], list[float]]], rounds: int = TIMING_ROUNDS) -> dict[str, Any]:
    """Time each of `runners` (backend → a call scoring the timing pairs, raw logits in order) `rounds` times,
    interleaved in rotating order after one untimed warm-up call each. Returns per backend the median seconds, the
    seconds of each round and the last scores (`speed_ratio` compares two of them)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1; got {rounds}")
    names = list(runners)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    scores: dict[str, list[float]] = {n: runners[n]() for n in names}  # warm-up: first-call allocations, JIT
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            scores[n] = runners[n]()
            seconds[n].append(time.perf_counter() - t0)
    return {n: {"median_s": round(statistics.median(seconds[n]), 4), "scores": scores[n], "seconds": seconds[n]}
            for n in names}


def speed_ratio(timed: dict[str, Any], slower: str, faster: str) -> float:
    """The seconds of `slower` over those of `faster` in `time_backends`' result: the median of per-round ratios
    (each round ran both under the same load)."""
    return round(statistics.median(t / o for t, o in zip(timed[slower]["seconds"], timed[faster]["seconds"])), 3)


def pick_backend(figures: dict[str, Any], min_gain: float = AUTO_MIN_GAIN) -> tuple[str, str]:
    """(backend, reason) from recorded timing `figures` (`ratio`: torch's seconds over ONNX Runtime's;
    `top10_identical`; where OpenVINO was timed too, `openvino_ratio`, `openvino_top10_identical` and
    `openvino_max_raw_diff`): the fastest exported runtime that was at least `min_gain` times faster than PyTorch
    with the same top-10 orders (OpenVINO also within the export's parity tolerance of PyTorch's logits), else
    torch."""
    from rerank.validation.onnx_export import PARITY_TOLERANCE

    timed = [("onnx", "ONNX Runtime", figures["ratio"], figures["top10_identical"])]
    if figures.get("openvino_ratio") is not None:
        exact = figures["openvino_top10_identical"] and figures.get("openvino_max_raw_diff", 0.0) <= PARITY_TOLERANCE
        timed.append(("openvino", "OpenVINO", figures["openvino_ratio"], exact))
    measured = "measured on this CPU: " + ", ".join(f"{label} float32 {ratio:.2f}×" for _, label, ratio, _ in timed) \
        + f" PyTorch's speed on {figures['pairs']} pairs"
    differed = [label for _, label, _, same in timed if not same]
    kept = [t for t in timed if t[3] and t[2] >= min_gain]
    differs = f" ({' and '.join(differed)}: top-10 order or logits differed from PyTorch's)" if differed else ""
    if kept:
        backend, label, _, _ = max(kept, key=lambda t: t[2])
        return backend, f"{measured}{differs}, same top-10 orders: {label} serves"
    if len(differed) == len(timed):
        return "torch", f"{measured}, but the top-10 order differed from PyTorch's: torch serves"
    return "torch", f"{measured}{differs} (needs ≥ {min_gain:.2f}×): torch serves"


def choose_cpu_backend(name: str, path: str, origin: str | None, options: RerankerOptions,
                       torch_scorer: Callable[[], Scorer], batch: Callable[[str], int]) -> tuple[str, dict[str, Any]]:
    """Backend auto on a CPU in float32: ("onnx", "openvino" or "torch", the choice record for
    `info().backend_choice`). Without ONNX Runtime: torch. Else the cached export (made and checked now if
    missing) and the cached timing for this machine (timed now if missing, `torch_scorer()` giving the PyTorch
    float32 scorer and `batch(backend)` each backend's pairs per pass) decide (`pick_backend`). An export that
    fails leaves torch serving, with why."""
    from rerank.batching import score_in_batches
    from rerank.validation.agreement import compare
    from rerank.validation.onnx_export import ensure_exported, export_dir, record_speed, recorded_speed

    if not onnx_installed():
        return "torch", {"backend": "torch", "reason": "ONNX Runtime is not installed (pip install "
                         "'kb-search[onnx]' to let the engine time it against PyTorch): torch serves"}
    started = time.perf_counter()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=options.allow_remote_code)
    folder = export_dir(path, origin, name, options.models_dir)
    threads = options.threads if options.threads is not None else available_cores()
    machine = machine_key(threads)
    try:
        from rerank.validation.onnx_export import read_manifest

        if read_manifest(folder) is None:
            progress.warning("reranker %s: first load on a CPU: exporting it to ONNX in %s, once (a model of "
                             "bge-reranker-v2-m3's size takes minutes and 2.3 GB on disk) to time ONNX Runtime "
                             "against PyTorch; KB_RERANK_BACKEND=torch skips this", name, folder)
        exported = ensure_exported(path, folder, tokenizer, options.max_length, options.allow_remote_code,
                                   open_scorer=lambda f, names: OnnxScorer(f, tokenizer, names, options.max_length))
    except RerankerLoadError as exc:
        return "torch", {"backend": "torch", "reason": f"the ONNX export failed ({exc}): torch serves"}
    figures = recorded_speed(exported, machine)
    openvino = openvino_installed()
    if figures is not None and openvino and "openvino_ratio" not in figures:
        figures = None  # timed before OpenVINO was installed (or before it was a candidate): time all again
    if figures is None:
        progress.warning("reranker %s: timing ONNX Runtime%s against PyTorch on this CPU (once per machine, %d "
                         "rounds)", name, " and OpenVINO" if openvino else "", TIMING_ROUNDS)
        pairs, groups = timing_pairs()
        lengths = [len(ids) for ids in tokenizer([q for q, _ in pairs], [t for _, t in pairs], truncation=True,
                                                 max_length=options.max_length)["input_ids"]]
        scorers = {"torch": torch_scorer(),
                   "onnx": OnnxScorer(exported.fp32_file, tokenizer, exported.input_names, options.max_length,
                                      options.threads)}
        if openvino:
            try:
                scorers["openvino"] = OpenVinoScorer(exported.fp32_file, tokenizer, exported.input_names,
                                                     options.max_length, options.threads)
            except RerankerLoadError as exc:
                progress.warning("reranker %s: %s; OpenVINO is not timed", name, exc)
        timed = time_backends({b: (lambda s=s, b=b: score_in_batches(pairs, lengths, batch(b), s.predict).scores)
                               for b, s in scorers.items()})
        agreement = compare(timed["torch"]["scores"], timed["onnx"]["scores"], groups)
        figures = {"ratio": speed_ratio(timed, "torch", "onnx"), "torch_s": timed["torch"]["median_s"],
                   "onnx_s": timed["onnx"]["median_s"], "pairs": len(pairs), "tokens": sum(lengths),
                   "rounds": TIMING_ROUNDS,
                   "batch": {b: batch(b) for b in scorers},
                   "top10_identical": agreement.top_k_identical, "max_raw_diff": agreement.max_raw_diff,
                   "measured": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_average": load_average()}
        if "openvino" in timed:
            ov = compare(timed["torch"]["scores"], timed["openvino"]["scores"], groups)
            figures.update(openvino_s=timed["openvino"]["median_s"],
                           openvino_ratio=speed_ratio(timed, "torch", "openvino"),
                           openvino_top10_identical=ov.top_k_identical, openvino_max_raw_diff=ov.max_raw_diff)
        elif openvino:
            figures["openvino_ratio"] = None  # could not compile: not timed again on every load
        exported = record_speed(exported, machine, figures)
        del scorers
    backend, reason = pick_backend(figures)
    first_load_s = round(time.perf_counter() - started, 1)
    if first_load_s >= 1.0:
        progress.warning("reranker %s: %s (%.1f s)", name, reason, first_load_s)
    return backend, {"backend": backend, "reason": reason, "machine": machine, "measured": figures,
                     "export_dir": str(exported.folder), "choose_s": first_load_s}


def exported_options(options: RerankerOptions, backend: str) -> RerankerOptions:
    """`options` with `backend` set (auto resolved to onnx)."""
    return replace(options, backend=backend)
