"""The reduced-precision policy: when a faster, slightly inexact copy of a model (bfloat16 on a CPU, int8) may
serve, and how its top order is kept float32's.

`decide` takes the reduced copy's agreement with float32 on the check set (`rerank.validation.agreement`):
- with `exact_top` N > 0, the reduced copy serves and `NearTies` re-scores the near-ties of its top N with the
  float32 scorer (`rerank.exact`), so the top-N order is float32's;
- with `exact_top` 0, it serves alone only if every top-10 order of the check set is identical and the score shift
  is within `quantize_max_shift`; otherwise (policy "refuse") the float32 scorer serves, with a warning that says
  why, or (policy "warn") the reduced copy serves anyway, with that warning.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from rerank.exact import margin_for, near_ties
from rerank.types import RerankerOptions
from rerank.validation.agreement import Agreement

from .scorers import Scorer

log = logging.getLogger(__name__)


class NearTies:
    """Re-scores, in float32, the near-ties of the top `top` of a reduced-precision scorer's results."""

    def __init__(self, exact: Scorer, margin: float, top: int):
        self.exact, self.margin, self.top = exact, margin, top
        self._lock = threading.Lock()
        self._stats = {"calls": 0, "candidates": 0, "rescored": 0}

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
        return out

    @property
    def stats(self) -> dict[str, int]:
        """How many calls, candidates and re-scored candidates so far."""
        with self._lock:
            return dict(self._stats)


@dataclass(frozen=True)
class Served:
    """What `decide` chose: the scorer that serves, its near-tie re-scorer, and the warning for `info()`."""

    scorer: Scorer
    near_ties: NearTies | None
    reduced: bool  # the reduced copy serves (False: refused, float32 serves)
    warning: str | None


def decide(name: str, what: str, agreement: Agreement, reduced: Scorer, float32: Callable[[], Scorer],
           options: RerankerOptions, fallback: str) -> Served:
    """Apply the policy (module docstring) to the reduced copy `reduced` of reranker `name`; `float32()` gives
    the float32 scorer (made only when needed). `what` and `fallback` name both in the warning."""
    if options.exact_top:
        exact = NearTies(float32(), margin_for(agreement.max_raw_diff), options.exact_top)
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
