"""Validation of the reranker's knobs, shared by the engines, the CLI and the service."""

from __future__ import annotations

from rerank.errors import RerankerParameterError

LONG_PASSAGE_MODES = ("max", "mean", "first")
BATCH_SIZE_RANGE = (1, 1024)
MAX_LENGTH_RANGE = (32, 8192)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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


def check_threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise RerankerParameterError("threshold", threshold, "a number from 0.0 to 1.0 (a sigmoid score)",
                                     "pass e.g. --threshold 0.5, or 0.0 to keep everything")
    return float(threshold)


def check_top_n(top_n: object) -> int:
    if not _is_int(top_n) or top_n < 1:
        raise RerankerParameterError("top_n", top_n, "an integer of 1 or more",
                                     "pass e.g. --top-n 5, or leave it unset to keep every result")
    return top_n
