"""The reranker's knobs and the shown-results filter: every range check and allowed value in one place.

Engines, `RerankerOptions`, the service, the settings and the API schemas all check against these, so a value is
allowed (or refused, with the same message) wherever it is given.
"""

from __future__ import annotations

from rerank.errors import RerankerParameterError
from retrieval.device import DTYPES

LONG_PASSAGE_MODES = ("max", "mean", "first")
BACKENDS = ("auto", "torch", "onnx", "openvino")
BATCH_SIZE_RANGE = (1, 1024)
MAX_LENGTH_RANGE = (32, 8192)
THREADS_RANGE = (1, 1024)
EXACT_TOP_RANGE = (0, 1000)
EXACT_MAX_SHARE_RANGE = (0.0, 1.0)
TOP_N_RANGE = (1, 100)  # results shown
THRESHOLD_RANGE = (0.0, 1.0)  # on the 0..1 score
BUDGET_MS_RANGE = (0, 600_000)  # rerank latency budget (rerank/budget.py); 0: none
_DEVICES = "auto, cpu, cuda or cuda:N"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_device(device: object) -> str:
    """Cheap string check (no torch import); `retrieval.device.choose_device` checks CUDA at load."""
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda")
                                           or (device.startswith("cuda:") and device[5:].isdigit())):
        raise RerankerParameterError("device", device, _DEVICES, "pass --device auto (GPU if present) or cpu")
    return device


def check_dtype(dtype: object) -> str:
    if dtype not in DTYPES:
        raise RerankerParameterError("dtype", dtype, ", ".join(DTYPES),
                                     "pass --dtype auto (float16 on GPU, float32 on CPU)")
    return dtype  # type: ignore[return-value]


def check_batch_size(batch_size: object) -> int:
    lo, hi = BATCH_SIZE_RANGE
    if not _is_int(batch_size) or not lo <= batch_size <= hi:
        raise RerankerParameterError("batch_size", batch_size, f"an integer from {lo} to {hi}",
                                     "pass e.g. --batch-size 32 (or set KB_RERANK_BATCH_SIZE)")
    return batch_size


def check_max_length(max_length: object, model_limit: int | None = None, model: str | None = None) -> int:
    lo, hi = MAX_LENGTH_RANGE
    if not _is_int(max_length) or not lo <= max_length <= hi:
        raise RerankerParameterError("max_length", max_length, f"an integer from {lo} to {hi} tokens",
                                     "pass e.g. --max-length 512 (or set KB_RERANK_MAX_LENGTH)")
    if model_limit is not None and max_length > model_limit:
        raise RerankerParameterError("max_length", max_length,
                                     f"at most {model_limit} tokens for {model or 'this model'} "
                                     "(its position embeddings end there)",
                                     f"pass --max-length {min(model_limit, 512)} (up to {model_limit})")
    return max_length


def check_long_passage(long_passage: object) -> str:
    if long_passage not in LONG_PASSAGE_MODES:
        raise RerankerParameterError("long_passage", long_passage, f"one of {', '.join(LONG_PASSAGE_MODES)}",
                                     "use max (default: the best window decides), mean or first")
    return long_passage  # type: ignore[return-value]


def check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise RerankerParameterError("backend", backend, f"one of {', '.join(BACKENDS)}",
                                     "pass --backend auto (the faster exact one on a CPU), torch, onnx or openvino "
                                     "(or set KB_RERANK_BACKEND)")
    return backend  # type: ignore[return-value]


def check_threads(threads: object) -> int | None:
    if threads is None:
        return None
    lo, hi = THREADS_RANGE
    if not _is_int(threads) or not lo <= threads <= hi:
        raise RerankerParameterError("threads", threads, f"an integer from {lo} to {hi}, or None (one per core)",
                                     "leave it unset, or set KB_RERANK_THREADS to the cores the reranker may use")
    return threads


def check_exact_top(exact_top: object) -> int:
    lo, hi = EXACT_TOP_RANGE
    if not _is_int(exact_top) or not lo <= exact_top <= hi:
        raise RerankerParameterError("exact_top", exact_top, f"an integer from {lo} (off) to {hi}",
                                     "leave it at 10: bfloat16/int8 near-ties in the top 10 are re-scored in "
                                     "float32 (KB_RERANK_EXACT_TOP)")
    return exact_top


def check_exact_max_share(share: object) -> float:
    lo, hi = EXACT_MAX_SHARE_RANGE
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not lo <= share <= hi:
        raise RerankerParameterError("exact_max_share", share, f"a share of candidates from {lo} to {hi}",
                                     "leave it at 0.5 (above that share of re-scoring, float32 scores directly); "
                                     "1.0 never falls back (KB_RERANK_EXACT_MAX_SHARE)")
    return float(share)


def check_threshold(threshold: object) -> float:
    lo, hi = THRESHOLD_RANGE
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not lo <= threshold <= hi:
        raise RerankerParameterError("threshold", threshold, f"a number from {lo} to {hi} (a 0..1 score)",
                                     "pass e.g. --threshold 0.5, or 0.0 to keep everything")
    return float(threshold)


def check_top_n(top_n: object) -> int:
    lo, hi = TOP_N_RANGE
    if not _is_int(top_n) or not lo <= top_n <= hi:
        raise RerankerParameterError("top_n", top_n, f"an integer from {lo} to {hi}",
                                     "pass e.g. --top-n 5")
    return top_n


def check_budget_ms(budget_ms: object) -> int | None:
    """None or 0: no budget (every candidate reranked)."""
    lo, hi = BUDGET_MS_RANGE
    if budget_ms is not None and (not _is_int(budget_ms) or not lo <= budget_ms <= hi):
        raise RerankerParameterError("rerank_budget_ms", budget_ms, f"an integer number of milliseconds from {lo} "
                                     f"(no budget) to {hi}", "pass e.g. --budget-ms 2000, or 0 to rerank all K")
    return budget_ms
