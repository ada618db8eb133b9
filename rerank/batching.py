"""Length-sorted batching with a bounded CUDA out-of-memory back-off.

Pairs are scored longest first (so a batch that does not fit shows up at once, and similar lengths share a batch:
less padding). On CUDA OOM the batch is halved and retried; at most log2(batch_size) halvings, after which
`CudaOOMExhausted` is raised and the engine falls back to CPU. Never an endless loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from rerank.errors import CudaOOMExhausted

T = TypeVar("T")
log = logging.getLogger(__name__)


def is_cuda_oom(exc: BaseException) -> bool:
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower() and "cuda" in str(exc).lower()


def _release_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class BatchRun:
    scores: list[float]  # in input order
    batch_size: int  # the batch size that worked last (smaller than asked after an OOM back-off)
    halvings: int  # how many times the batch was halved


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices sorted by length, longest first; ties keep input order (stable)."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def score_in_batches(items: Sequence[T], lengths: Sequence[int], batch_size: int,
                     score_batch: Callable[[list[T]], Sequence[float]]) -> BatchRun:
    """Score `items` in length-sorted batches of `batch_size`; results in input order.

    `score_batch` scores one batch and returns one float per item. CUDA OOM halves the batch (bounded);
    any other exception propagates unchanged.
    """
    if len(items) != len(lengths):
        raise ValueError(f"items and lengths differ in size: {len(items)} != {len(lengths)}")
    order = length_order(lengths)
    out: list[float] = [0.0] * len(items)
    max_halvings = max(1, batch_size).bit_length()  # 32 → 6 halvings: 16, 8, 4, 2, 1, then give up
    halvings = 0
    pos = 0
    while pos < len(order):
        idx = order[pos:pos + batch_size]
        try:
            scores = score_batch([items[i] for i in idx])
        except Exception as exc:
            if not is_cuda_oom(exc):
                raise
            _release_cuda_cache()
            if batch_size == 1 or halvings >= max_halvings:
                raise CudaOOMExhausted(f"CUDA out of memory at batch size {batch_size} after {halvings} "
                                       "halvings") from exc
            batch_size = max(1, batch_size // 2)
            halvings += 1
            log.warning("CUDA out of memory; retrying with batch_size=%d", batch_size)
            continue
        if len(scores) != len(idx):
            raise RuntimeError(f"scorer returned {len(scores)} scores for a batch of {len(idx)}")
        for i, s in zip(idx, scores, strict=True):
            out[i] = float(s)
        pos += len(idx)
    return BatchRun(out, batch_size, halvings)
