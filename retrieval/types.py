"""What recall returns (a chunk with its retrieval score and the leg(s) that found it) and what it is asked for
(the recall modes, the range of K)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:  # importing the ingest package loads every format's reader; settings need only the ranges here
    from ingest.types import Chunk

Leg = Literal["dense", "lexical", "both"]

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[str, ...] = get_args(Mode)  # the one list: settings, API schema, CLI and app read it
TOP_K_RANGE = (1, 1000)  # recall size K


def check_top_k(top_k: object) -> int:
    """ValueError naming top_k, its value and the allowed range."""
    lo, hi = TOP_K_RANGE
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not lo <= top_k <= hi:
        raise ValueError(f"top_k must be between {lo} and {hi}; got {top_k}")
    return top_k


def check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode  # type: ignore[return-value]


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    retrieval_score: float  # fused score in hybrid mode (RRF), cosine for dense, BM25 for lexical
    leg: Leg
    dense_rank: int | None = None  # 1-based rank in each leg, None when that leg did not find it
    lexical_rank: int | None = None
