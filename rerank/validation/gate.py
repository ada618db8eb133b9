"""The promotion gate: may the cross-encoder folder `candidate` replace the reranker serving now?

Three checks, all of which must pass:

1. the folder check of `kb models check` (config, architecture, tokenizer, weights, a finite smoke score);
2. with a golden file, no regression: the candidate's pairwise agreement with the labels may be at most
   `tolerance` below the serving model's (`check.golden_report`);
3. a comparison with the serving model on the same pairs (the golden pairs, else the built-in check set):
   the mean share of each query's top N that both models put there (`min_top_overlap`), and the mean shift of the
   0..1 score (`max_score_shift`): thresholds, bands and calibration were tuned on the serving model's scale, so a
   model that moves scores further needs `kb tune` before it serves.

When there is no serving model (reranker "none"), or it cannot be loaded here, 2 and 3 have no baseline: the
report says so and they do not refuse (the folder check still must pass). The serving model is loaded by the
`load` callable the caller hands over (`app.components.load_unshared`): this layer builds no serving model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rerank.errors import RerankError
from rerank.protocol import Reranker
from rerank.types import RerankerOptions, sigmoid
from rerank.validation.agreement import check_set, top_k_order
from rerank.validation.check import (
    CheckReport,
    GoldenPair,
    GoldenReport,
    check_model,
    golden_report,
    load_golden,
    score_grouped,
)
from rerank.validation.metrics import mean_kendall_by_group


@dataclass(frozen=True, kw_only=True)
class GateLimits:
    top_n: int = 5  # the comparison looks at each query's top N
    min_top_overlap: float = 0.6  # mean share of the top N both models agree on
    max_score_shift: float = 0.25  # mean |Δ score| on the 0..1 scale
    tolerance: float = 0.02  # golden agreement may drop at most this much


@dataclass(frozen=True)
class Comparison:
    """The candidate against the serving model on the same pairs."""

    on: str  # "golden <file>" or "built-in check set"
    pairs: int
    queries: int
    top_n: int
    top_overlap: float  # mean |top N(candidate) ∩ top N(serving)| / min(N, passages of the query)
    same_top_order: float  # share of queries whose top N is the same, in the same order
    kendall_tau: float | None  # mean per-query rank correlation of the two models' scores
    mean_score_shift: float
    max_score_shift: float


@dataclass
class GateReport:
    candidate: str
    serving: str | None
    check: CheckReport
    golden: GoldenReport | None = None
    comparison: Comparison | None = None
    notes: list[str] = field(default_factory=list)  # what could not be compared, and why
    reasons: list[str] = field(default_factory=list)  # why the candidate is refused (empty: it passed)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def summary(self) -> dict[str, Any]:
        """The figures worth keeping in the promotion history."""
        out: dict[str, Any] = {"passed": self.passed, "serving": self.serving, "reasons": list(self.reasons),
                               "notes": list(self.notes)}
        if self.golden is not None:
            out["golden"] = {k: getattr(self.golden, k) for k in
                             ("file", "n_pairs", "candidate_agreement", "current_agreement", "verdict")}
        if self.comparison is not None:
            out["comparison"] = asdict(self.comparison)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, **self.summary(), "check": self.check.to_dict(),
                "golden": asdict(self.golden) if self.golden else None}


def compare_models(groups: Sequence[Hashable], candidate: Sequence[float], serving: Sequence[float], top_n: int,
                   on: str) -> Comparison:
    """Top-N overlap, identical top-N order, rank correlation and score shift of two models' raw scores on the
    same pairs (`groups`: the query of each pair)."""
    by_group: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    overlaps, same = [], 0
    for idx in by_group.values():
        a = [candidate[i] for i in idx]
        b = [serving[i] for i in idx]
        n = min(top_n, len(idx))
        top_a, top_b = top_k_order(a, n), top_k_order(b, n)
        overlaps.append(len(set(top_a) & set(top_b)) / n)
        same += top_a == top_b
    shifts = [abs(sigmoid(x) - sigmoid(y)) for x, y in zip(candidate, serving, strict=True)]
    return Comparison(on=on, pairs=len(shifts), queries=len(by_group), top_n=top_n,
                      top_overlap=sum(overlaps) / len(overlaps), same_top_order=same / len(by_group),
                      kendall_tau=mean_kendall_by_group(groups, candidate, serving),
                      mean_score_shift=sum(shifts) / len(shifts), max_score_shift=max(shifts))


def _pairs(golden: str | Path | None) -> tuple[list[GoldenPair], str]:
    if golden is not None:
        return load_golden(golden), f"golden {golden}"
    pairs, _ = check_set()  # one query text per group
    return [GoldenPair(q, p, 0.0) for q, p in pairs], "built-in check set"


def gate(candidate: str | Path, serving: str | None, golden: str | Path | None = None,
         options: RerankerOptions | None = None, limits: GateLimits | None = None, *,
         load: Callable[[str, RerankerOptions], Reranker]) -> GateReport:
    """Check `candidate` (a cross-encoder folder) against `serving` (the reranker name serving now; None or "none":
    nothing serves) with `options` (default: the CPU); `load(name, options)` returns the serving model loaded (its
    errors become a note: no baseline). Never raises for a bad model: the report says why it is refused. A golden
    file that cannot be read raises `RerankerParameterError` (the caller's mistake)."""
    from rerank.engines.factory import is_disabled

    options = options if options is not None else RerankerOptions(device="cpu")
    limits = limits if limits is not None else GateLimits()
    pairs, on = _pairs(golden)  # a bad golden file is refused before any model loads
    report = GateReport(str(candidate), None if is_disabled(serving) else serving, check_model(candidate,
                                                                                            options=options))
    if not report.check.ok:
        report.reasons += [f"folder check {i.name} failed: {i.message} (fix: {i.fix})" for i in report.check.failures]
        return report
    new = score_grouped(report.check.scorer, pairs)  # the folder check loaded it for its smoke score
    old = None
    if report.serving is None:
        report.notes.append("no reranker serves now: nothing to compare with")
    else:
        try:
            old = score_grouped(load(report.serving, options), pairs)
        except (RerankError, ValueError, RuntimeError, OSError) as exc:
            report.notes.append(f"the serving reranker {report.serving!r} could not be loaded here to compare "
                                f"with ({exc})")
    if golden is not None:
        report.golden = golden_report(str(golden), pairs, new, old, report.serving, limits.tolerance,
                                      None if old is not None else "no serving model to compare with")
        if report.golden.verdict == "regression":
            report.reasons.append(
                f"golden regression: agreement with the labels {report.golden.candidate_agreement:.3f} against "
                f"{report.golden.current_agreement:.3f} for the serving model (tolerance {limits.tolerance})")
    if old is None:
        return report
    c = report.comparison = compare_models([p.query for p in pairs], new, old, limits.top_n, on)
    if c.top_overlap < limits.min_top_overlap:
        report.reasons.append(f"top-{c.top_n} overlap with the serving model {c.top_overlap:.2f} is below "
                              f"{limits.min_top_overlap} on the {on}")
    if c.mean_score_shift > limits.max_score_shift:
        report.reasons.append(f"mean score shift {c.mean_score_shift:.3f} is above {limits.max_score_shift} on the "
                              f"{on}: re-tune the threshold (`kb tune`) for the new model's scale, or raise the limit")
    return report
