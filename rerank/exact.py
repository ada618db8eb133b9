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

**Never slower than float32.** The reduced pass plus the re-scoring costs ρ·K + R float32-candidate units against
K for float32 alone (ρ: the reduced pass's cost per token relative to float32's; R: candidates re-scored), so it
pays only while R / K < 1 − ρ. `worth_reducing` decides per call from what was measured: the expected re-scored
count R̂ (seeded by the check set at load, then the running mean of real calls) and ρ̂ (timed at load, then on real
calls), against `rescore_limit` = min(`max_share`, 1 − ρ̂). Above it the call is scored by float32 (or the exported
float32 model) directly. R is a count, not a share, because it hardly grows with K: only the top N and their
near-ties are re-scored, so the same model may take the reduced path at K=50 and float32 at K=10.
Pure functions; the engine (`rerank.engines.cross_encoder`) runs the scorers (`rerank.engines.precision.NearTies`).
"""

from __future__ import annotations

from collections.abc import Sequence

# delta = SAFETY × the largest |Δ logit| seen on the check set. An estimate: the check set's passages are one
# sentence, and real passages (longer) shift more; on a trained model ~1% of real pairs exceeded it, without
# changing any top-10 order (docs/PERFORMANCE.md). Raise it for a stricter bound at the cost of more re-scoring.
SAFETY = 2.0

# the largest share of a call's candidates that may be re-scored before float32 alone is the faster way. Below the
# break-even share 1 − ρ on purpose: the re-scoring runs in smaller, less efficient batches than a whole pass, and
# ρ̂ and R̂ are estimates (AMX bfloat16, ρ ≈ 0.25–0.3: break-even 0.7; AVX512-BF16, ρ ≈ 0.57: break-even 0.43)
MAX_SHARE = 0.5


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


def rescore_limit(max_share: float, speed_ratio: float | None) -> float:
    """The share of candidates above which a call skips the reduced pass: `max_share`, lowered to the break-even
    share 1 − `speed_ratio` once the reduced pass's cost relative to float32 (`speed_ratio`, ρ) is known. A reduced
    pass that is not faster (ρ ≥ 1, e.g. bfloat16 emulated without AMX/AVX512-BF16) gives a limit ≤ 0: always
    float32. `max_share` 1.0 means: never fall back (the reduced pass serves whatever the re-scoring costs)."""
    if not 0.0 <= max_share <= 1.0:
        raise ValueError(f"max_share must be from 0.0 to 1.0; got {max_share}")
    if max_share >= 1.0 or speed_ratio is None:
        return max_share
    return min(max_share, 1.0 - speed_ratio)


def worth_reducing(expected_rescored: float, candidates: int, limit: float) -> bool:
    """Whether a call of `candidates` should take the reduced pass (then re-score its near-ties) rather than
    float32 alone: when the re-scoring is expected to redo at most `limit` of them (`limit` ≥ 1: always)."""
    if limit >= 1.0:
        return True
    if candidates <= 0:
        return False
    return expected_rescored / candidates <= limit
