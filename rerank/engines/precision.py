"""The reduced-precision policy: when a faster, slightly inexact copy of a model (bfloat16 on a CPU, int8) may
serve, and how its top order is kept float32's.

`decide` takes the reduced copy's agreement with float32 on the check set (`rerank.validation.agreement`):
- with `exact_top` N > 0, the reduced copy serves and `NearTies` re-scores the near-ties of its top N with the
  float32 scorer (`rerank.exact`), so the top-N order is float32's; and per call `NearTies.reduce` decides whether
  the reduced pass pays at all: when the re-scoring is expected to redo more than the limit share of the call's
  candidates (`rerank.exact.rescore_limit`: `exact_max_share`, lowered to the measured break-even), the call is
  scored by the float32 scorer directly, so the path is never slower than float32 alone. `NearTies.choice` says
  which path the last call took and why (`info().exact_choice`: /info, the Status page, `kb bench rerank`);
- with `exact_top` 0, it serves alone only if every top-10 order of the check set is identical and the score shift
  is within `quantize_max_shift`; otherwise (policy "refuse") the float32 scorer serves, with a warning that says
  why, or (policy "warn") the reduced copy serves anyway, with that warning.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rerank.exact import MAX_SHARE, margin_for, near_ties, rescore_limit, worth_reducing
from rerank.types import RerankerOptions
from rerank.validation.agreement import Agreement

from .scorers import Scorer

log = logging.getLogger(__name__)


ALPHA = 0.3  # weight of the newest call in the running estimates (the queries and the machine's load drift)
# every this many calls in a row sent to float32, one takes the reduced pass again, so the estimates follow the
# queries (a call scored by float32 alone measures nothing about re-scoring); at most 1/8 of calls pay a slow one
PROBE_EVERY = 8


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else ALPHA * new + (1 - ALPHA) * old


class NearTies:
    """Re-scores, in float32, the near-ties of the top `top` of a reduced-precision scorer's results, and decides
    per call whether the reduced pass is worth running at all (module docstring). Thread-safe.

    `expected` (R̂, candidates re-scored per request) and `speed_ratio` (ρ̂, the reduced pass's seconds per token
    over float32's) are the seeds measured at load (None: not known yet); both follow the real calls, and so does
    the re-scored share of a request (Ŝ, no seed: the check set's dozen candidates per query say little about the
    share of fifty). A call of K candidates expects max(R̂, Ŝ·K) re-scorings: R̂ for a model that separates its
    candidates (only the top N's near-ties, whatever K), Ŝ·K for one whose candidates all crowd within the margin
    (where the near-ties chain through the whole list)."""

    def __init__(self, exact: Scorer, margin: float, top: int, max_share: float = MAX_SHARE,
                 expected: float | None = None, speed_ratio: float | None = None, what: str = "reduced"):
        rescore_limit(max_share, None)  # checks the range
        self.exact, self.margin, self.top, self.max_share, self.what = exact, margin, top, max_share, what
        self._expected, self._speed_ratio = expected, speed_ratio
        self._share: float | None = None
        self._direct_run = 0  # calls in a row sent to float32
        self._lock = threading.Lock()
        self._stats = {"calls": 0, "candidates": 0, "rescored": 0, "direct_calls": 0, "direct_candidates": 0}
        self._last: dict[str, Any] | None = None

    def reduce(self, counts: Sequence[int]) -> bool:
        """Whether a call scoring requests of `counts` candidates takes the reduced pass (then `rescore`), rather
        than the float32 scorer directly (then `direct`). Records the choice and its reason for `choice`."""
        with self._lock:
            expected, ratio, share, run = self._expected, self._speed_ratio, self._share, self._direct_run
        total = sum(counts)
        limit = rescore_limit(self.max_share, ratio)
        # the first call with nothing measured takes the reduced path: it is what measures
        predicted = None if expected is None else sum(min(n, max(expected, (share or 0.0) * n)) for n in counts)
        reduced = predicted is None or worth_reducing(predicted, total, limit)
        probe = not reduced and run + 1 >= PROBE_EVERY
        share = None if predicted is None or not total else predicted / total
        speed = "" if ratio is None else f"; the {self.what} pass costs {ratio:.2f}× float32's per token"
        if self.max_share >= 1.0:
            reason = f"{self.what} pass with float32 re-scoring of top-{self.top} near-ties (exact_max_share 1: " \
                     "never falls back)"
        elif predicted is None:
            reason = f"{self.what} pass with float32 re-scoring of top-{self.top} near-ties (nothing measured yet)"
        elif probe:
            reason = (f"{self.what} pass with float32 re-scoring, to measure again: float32 scored the last "
                      f"{run} calls directly (re-scoring was expected to redo {share_text(predicted, total)})")
        elif reduced:
            reason = (f"{self.what} pass with float32 re-scoring: about {predicted:.1f} of {total} candidates "
                      f"re-scored ({share:.0%}), within the limit {max(limit, 0):.0%}{speed}")
        else:
            reason = (f"float32 directly: re-scoring would redo about {predicted:.1f} of {total} candidates "
                      f"({share:.0%}), above the limit {max(limit, 0):.0%} (exact_max_share {self.max_share:g}"
                      f"{speed}), where the {self.what} pass plus re-scoring is slower than float32 alone")
        reduced = reduced or probe
        with self._lock:
            self._direct_run = 0 if reduced else self._direct_run + 1
            self._last = {"path": self.what if reduced else "float32", "reason": reason, "candidates": total,
                          "expected_rescored": None if predicted is None else round(predicted, 2),
                          "limit": round(limit, 3)}
        return reduced

    def direct(self, candidates: int) -> None:
        """Count a call that `reduce` sent to the float32 scorer directly."""
        with self._lock:
            self._stats["direct_calls"] += 1
            self._stats["direct_candidates"] += candidates

    def rescore(self, raws: list[float], exact_scores: Callable[[list[int]], list[float]]) -> list[float]:
        """`raws` with the near-ties replaced by their float32 scores, `exact_scores(indices)` (a new list)."""
        out = list(raws)
        again = near_ties(out, self.top, self.margin)
        if again:
            for i, raw in zip(again, exact_scores(again), strict=True):
                out[i] = raw
        with self._lock:
            self._stats["calls"] += 1
            self._stats["candidates"] += len(out)
            self._stats["rescored"] += len(again)
            self._expected = _ewma(self._expected, float(len(again)))
            self._share = _ewma(self._share, len(again) / len(out)) if out else self._share
        return out

    def observe_speed(self, reduced_s: float, reduced_tokens: int, exact_s: float, exact_tokens: int) -> None:
        """Fold in one call's timings: the reduced pass over `reduced_tokens` and the float32 re-scoring over
        `exact_tokens` (a call with nothing re-scored says nothing about the ratio)."""
        if min(reduced_s, exact_s) <= 0 or min(reduced_tokens, exact_tokens) <= 0:
            return
        ratio = (reduced_s / reduced_tokens) / (exact_s / exact_tokens)
        with self._lock:
            self._speed_ratio = _ewma(self._speed_ratio, ratio)

    @property
    def stats(self) -> dict[str, int]:
        """How many calls, candidates and re-scored candidates took the reduced path so far, and how many calls
        (and their candidates) were scored by float32 directly."""
        with self._lock:
            return dict(self._stats)

    @property
    def choice(self) -> dict[str, Any]:
        """The path of the last call (`path`: the reduced copy's name or "float32"), its `reason`, and the
        estimates the next call decides on."""
        with self._lock:
            last = dict(self._last) if self._last else {
                "path": self.what, "reason": "no call yet", "candidates": None, "expected_rescored": None,
                "limit": round(rescore_limit(self.max_share, self._speed_ratio), 3)}
            return {**last, "max_share": self.max_share,
                    "expected_rescored_per_request": None if self._expected is None else round(self._expected, 2),
                    "rescored_share": None if self._share is None else round(self._share, 3),
                    "speed_ratio": None if self._speed_ratio is None else round(self._speed_ratio, 3)}


def share_text(predicted: float, total: int) -> str:
    return f"about {predicted:.1f} of {total} candidates ({predicted / total:.0%})" if total else "nothing"


def check_set_rescored(reduced: Sequence[float], groups: Sequence[int], top: int, margin: float) -> float:
    """The mean number of candidates per check-set query that re-scoring would redo: the seed of `NearTies`'s
    estimate before any real call."""
    by: dict[int, list[float]] = {}
    for score, g in zip(reduced, groups, strict=True):
        by.setdefault(g, []).append(score)
    return sum(len(near_ties(v, top, margin)) for v in by.values()) / max(1, len(by))


@dataclass(frozen=True)
class Served:
    """What `decide` chose: the scorer that serves, its near-tie re-scorer, and the warning for `info()`."""

    scorer: Scorer
    near_ties: NearTies | None
    reduced: bool  # the reduced copy serves (False: refused, float32 serves)
    warning: str | None


def decide(name: str, what: str, agreement: Agreement, reduced: Scorer, float32: Callable[[], Scorer],
           options: RerankerOptions, fallback: str, rescored_on_check: Callable[[float], float] | None = None,
           speed_ratio: float | None = None) -> Served:
    """Apply the policy (module docstring) to the reduced copy `reduced` of reranker `name`; `float32()` gives
    the float32 scorer (made only when needed). `what` and `fallback` name both in the warning.
    `rescored_on_check(margin)` (the mean re-scorings per check-set query at that margin) and `speed_ratio` (the
    reduced pass's time over float32's on the check set) seed the per-call choice when known."""
    if options.exact_top:
        margin = margin_for(agreement.max_raw_diff)
        seed = rescored_on_check(margin) if rescored_on_check is not None else None
        exact = NearTies(float32(), margin, options.exact_top, options.exact_max_share, seed, speed_ratio,
                         what.split()[0])
        return Served(reduced, exact, True, None)
    if agreement.acceptable(options.quantize_max_shift):
        return Served(reduced, None, True, None)
    refuse = options.quantize_policy == "refuse"
    warning = (f"{what} {'refused' if refuse else 'used although it failed its check'}: on the check set it "
               f"changed the top-{agreement.top_k} order of {agreement.queries_with_changed_top_k}/"
               f"{agreement.queries} queries, max score shift {agreement.max_score_diff:.4f} (allowed "
               f"{options.quantize_max_shift}); " + (f"serving {fallback}" if refuse else "scores differ from float32"))
    warnings.warn(f"reranker {name!r}: {warning}", RuntimeWarning, stacklevel=4)
    log.warning("reranker %s: %s", name, warning)
    if refuse:
        return Served(float32(), None, False, warning)
    return Served(reduced, None, True, warning)
