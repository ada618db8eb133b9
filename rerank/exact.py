"""Which candidates a fast, slightly inexact scorer (bfloat16 on a CPU, int8) must have re-scored in float32 so that
the top-N order is exactly float32's.

Given fast scores f(i) that differ from the float32 scores e(i) by at most `delta` (|f − e| ≤ δ, measured on the
check set and widened by a safety factor), let m = 2δ and s = the N-th best fast score. Then:

- a candidate with f < s − m cannot be in the float32 top N (the N fast leaders all have e ≥ s − δ > f + δ ≥ e);
- two candidates whose fast scores are more than m apart are in the same order in float32;
- so re-scoring, among the candidates with f ≥ s − m, only those within m of a neighbour (a near-tie) gives final
  scores whose top-N order equals the float32 top-N order, provided δ really bounds the error (δ is estimated on
  the check set: see SAFETY). Re-scored candidates carry their float32 score; the
  others keep their fast score, within δ of float32.

A trained reranker separates candidates by whole logits, so only a few near-ties are re-scored; a random-weight
model has every candidate within noise of the others, so nearly all of the top are re-scored (exact, not fast).
Pure functions; the engine (`rerank.engines.cross_encoder`) runs the scorers.
"""

from __future__ import annotations

from collections.abc import Sequence

# delta = SAFETY × the largest |Δ logit| seen on the check set. An estimate: the check set's passages are one
# sentence, and real passages (longer) shift more; on a trained model ~1% of real pairs exceeded it, without
# changing any top-10 order (docs/PERFORMANCE.md). Raise it for a stricter bound at the cost of more re-scoring.
SAFETY = 2.0


def near_ties(fast: Sequence[float], top: int, margin: float) -> list[int]:
    """Indices (ascending) to re-score exactly so that the top-`top` order of the result is the exact order,
    assuming every fast score is within margin / 2 of its exact score. `top` ≤ 0 or an empty list: none."""
    if top <= 0 or not fast:
        return []
    if margin < 0:
        raise ValueError(f"margin must be ≥ 0; got {margin}")
    order = sorted(range(len(fast)), key=lambda i: -fast[i])
    boundary = fast[order[min(top, len(order)) - 1]]
    contenders = [i for i in order if fast[i] >= boundary - margin]
    marked = set()
    for a, b in zip(contenders, contenders[1:]):
        if fast[a] - fast[b] <= margin:
            marked.update((a, b))
    return sorted(marked)


def margin_for(max_check_diff: float, safety: float = SAFETY) -> float:
    """The near-tie margin 2δ for a scorer whose largest |Δ logit| on the check set was `max_check_diff`."""
    return 2.0 * safety * max(0.0, float(max_check_diff))
