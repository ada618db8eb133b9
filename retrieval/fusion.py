"""Hybrid fusion of ranked lists: weighted reciprocal rank fusion (Cormack et al., 2009)."""

from __future__ import annotations

from collections.abc import Sequence


def rrf(rankings: Sequence[Sequence[str]], weights: Sequence[float], k: int = 60) -> list[tuple[str, float]]:
    """score(d) = Σ_legs w_leg / (k + rank_leg(d)), ranks from 1. Ties keep first-seen order. Best first."""
    if len(rankings) != len(weights):
        raise ValueError(f"need one weight per ranking: {len(rankings)} rankings, {len(weights)} weights")
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])
