"""What reranking returns: the reranker's raw logit, its sigmoid, a band word and a rank."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from retrieval.types import Hit

Band = Literal["strong", "review", "weak"]
STRONG_ABOVE = 0.7
REVIEW_FROM = 0.5


def sigmoid(x: float) -> float:
    """Numerically stable logistic function (no overflow for large |x|)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def band_of(score: float) -> Band:
    """strong > 0.7, review 0.5–0.7, weak < 0.5 (DESIGN.md)."""
    if score > STRONG_ABOVE:
        return "strong"
    return "review" if score >= REVIEW_FROM else "weak"


@dataclass(frozen=True)
class Scored:
    """One candidate after reranking. `index` is its position in the input; `hit` is None in the playground."""

    index: int
    text: str
    raw_score: float
    score: float
    band: Band
    rank: int
    hit: Hit | None = None
