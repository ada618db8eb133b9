"""What recall returns: a chunk with its retrieval score and the leg(s) that found it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ingest.types import Chunk

Leg = Literal["dense", "lexical", "both"]


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    retrieval_score: float  # fused score in hybrid mode (RRF), cosine for dense, BM25 for lexical
    leg: Leg
    dense_rank: int | None = None  # 1-based rank in each leg, None when that leg did not find it
    lexical_rank: int | None = None
