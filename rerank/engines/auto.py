"""Backend auto's third candidate on a CPU: bfloat16 + exact re-scoring, beside PyTorch and ONNX Runtime float32.

With no dtype set (`dtype="auto"`), exact re-scoring on (`exact_top` > 0) and a CPU that multiplies bfloat16 in
hardware (`rerank.engines.scorers.native_bf16_flags`: AMX-BF16 or AVX512-BF16), backend auto measures, after it
picked the faster float32 backend F (`rerank.engines.exported.choose_cpu_backend`), whether a bfloat16 pass whose
top-N near-ties F re-scores (`rerank.engines.precision.NearTies`) is faster than F alone:

- ρ: the bfloat16 pass's time over F's on the timing pairs (`timing_pairs`, 3 interleaved rounds, each at its own
  batch size);
- the margin: twice the safety factor times the largest |Δ logit| between the two on the check set (as for
  `dtype="bfloat16"`, `rerank.exact.margin_for`);
- S: the share of candidates the margin would send to re-scoring, with every check query scored against every
  distinct check passage (24 candidates a query, the top-10 of them): a model whose scores crowd together (random
  weights) marks nearly all, a trained one the near-ties of its top only. A conservative stand-in for K=50: the
  top-10 is a larger part of 24 candidates than of 50 (a trained model: ~40% here against 14% of real K=50
  calls).

bfloat16 + exact serves when S is within the per-call limit (`rerank.exact.rescore_limit`) and the expected cost
ρ + S (in units of F's time) is at most 1 / `AUTO_MIN_GAIN`; otherwise F serves alone. Either way the choice record
(`info().backend_choice`) keeps the figures and says why. When bfloat16 serves, F (not PyTorch float32) re-scores
the near-ties and scores directly any call whose re-scoring would redo too many candidates (the per-call rule is
unchanged), so no call costs more than F alone, probes aside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rerank.exact import margin_for, near_ties, rescore_limit

from .exported import AUTO_MIN_GAIN, TIMING_ROUNDS, speed_ratio, time_backends, timing_pairs
from .scorers import Scorer, load_average

# bfloat16 + exact serves where its expected time is at most 1 / MIN_GAIN of the float32 backend's (the same noise
# allowance as ONNX Runtime against PyTorch)
MIN_GAIN = AUTO_MIN_GAIN
KEY = "bfloat16+exact"  # the manifest's speed entry for this machine: "<CPU>, <threads> threads, bfloat16+exact"
NAMES = {"torch": "PyTorch float32", "onnx": "ONNX Runtime float32", "openvino": "OpenVINO float32"}


def why_not_bfloat16(dtype: str, exact_top: int, quantize: bool, native_flags: list[str]) -> str | None:
    """Why backend auto does not try bfloat16 + exact for these options on this CPU (None: it does)."""
    if dtype != "auto":
        return f"dtype {dtype} was set: no reduced precision tried"
    if quantize:
        return "quantize (int8) was set"
    if exact_top <= 0:
        return "exact_top 0: bfloat16 alone would change the top order, so it is not tried"
    if not native_flags:
        return "this CPU has no AMX-BF16 or AVX512-BF16 (bfloat16 would be emulated, slower than float32): not tried"
    return None


def recorded(export_dir: str | None, machine: str | None, float32_backend: str, top: int) -> dict[str, Any] | None:
    """The figures of an earlier `measure_bfloat16` on this machine for this model (kept in its export's manifest,
    made again with the export when the weights change), if they were taken against `float32_backend` with the
    same exact top N; else None."""
    from pathlib import Path

    from rerank.validation.onnx_export import read_manifest

    if not export_dir or not machine:
        return None
    manifest = read_manifest(Path(export_dir)) or {}
    figures = (manifest.get("speed") or {}).get(f"{machine}, {KEY}")
    if not figures or figures.get("float32_backend") != float32_backend or figures.get("top") != top:
        return None
    return figures


def record(export_dir: str | None, machine: str | None, figures: dict[str, Any]) -> None:
    """Keep `figures` in the export's manifest for `recorded` (nothing without an export)."""
    from pathlib import Path

    from rerank.validation.onnx_export import Exported, read_manifest, record_speed

    manifest = read_manifest(Path(export_dir)) if export_dir and machine else None
    if manifest is not None:
        record_speed(Exported(Path(export_dir), manifest), f"{machine}, {KEY}", figures)


def crowding_pairs() -> tuple[list[tuple[str, str]], list[int]]:
    """Every check query against every distinct check passage, and each pair's query index."""
    from rerank.validation.agreement import CHECK_QUERIES

    passages = list(dict.fromkeys(p for _, ps in CHECK_QUERIES for p in ps))
    pairs = [(query, p) for query, _ in CHECK_QUERIES for p in passages]
    groups = [g for g in range(len(CHECK_QUERIES)) for _ in passages]
    return pairs, groups


def measure_bfloat16(reduced: Scorer, exact: Scorer, batch: Callable[[str], int], lengths: Callable[[list], list[int]],
                     top: int, rounds: int = TIMING_ROUNDS) -> dict[str, Any]:
    """The figures `pick_bfloat16` decides on: the bfloat16 copy `reduced` against the float32 scorer `exact` that
    would re-score its near-ties. `batch(backend)` is each one's pairs per pass, `lengths(pairs)` their token
    counts (for length-sorted batches), `top` the exact top N."""
    from rerank.batching import score_in_batches
    from rerank.validation.agreement import check_set, compare

    def run(scorer: Scorer, pairs: list, n: list[int]) -> list[float]:
        return score_in_batches(pairs, n, batch(scorer.backend), scorer.predict).scores

    pairs, _ = timing_pairs()
    n = lengths(pairs)
    timed = time_backends({"float32": lambda: run(exact, pairs, n), "bfloat16": lambda: run(reduced, pairs, n)},
                          rounds)
    ratio = speed_ratio(timed, "bfloat16", "float32")
    check, groups = check_set()
    n = lengths(check)
    agreement = compare(run(exact, check, n), run(reduced, check, n), groups)
    margin = margin_for(agreement.max_raw_diff)
    crowd, crowd_groups = crowding_pairs()
    scores = run(reduced, crowd, lengths(crowd))
    per_query = [len(near_ties([s for s, g in zip(scores, crowd_groups) if g == q], top, margin))
                 for q in sorted(set(crowd_groups))]
    share = sum(per_query) / len(scores)
    return {"float32_backend": exact.backend, "speed_ratio": ratio,
            "float32_s": timed["float32"]["median_s"], "bfloat16_s": timed["bfloat16"]["median_s"],
            "pairs": len(pairs), "rounds": rounds, "batch": {"float32": batch(exact.backend),
                                                             "bfloat16": batch(reduced.backend)},
            "margin": round(margin, 5), "agreement": agreement.to_dict(),
            "candidates_per_query": len(scores) // len(per_query), "top": top,
            "rescored_per_query": round(sum(per_query) / len(per_query), 2), "rescored_share": round(share, 3),
            "expected_cost": round(ratio + share, 3), "load_average": load_average()}


def pick_bfloat16(figures: dict[str, Any], max_share: float, min_gain: float | None = None) -> tuple[bool, str]:
    """(whether bfloat16 + exact serves, the reason) from `measure_bfloat16`'s figures: when the re-scored share S
    is within the per-call limit and ρ + S ≤ 1 / `min_gain` (`MIN_GAIN` when None; module docstring)."""
    min_gain = MIN_GAIN if min_gain is None else min_gain
    rho, share, f32 = figures["speed_ratio"], figures["rescored_share"], NAMES[figures["float32_backend"]]
    measured = (f"bfloat16 + exact measured: its pass {rho:.2f}× the time of {f32} on {figures['pairs']} pairs, and "
                f"{share:.0%} of {figures['candidates_per_query']} candidates a query within the margin "
                f"{figures['margin']:.3g} of its top-{figures['top']} (re-scored)")
    limit = rescore_limit(max_share, rho)
    if share > limit:
        return False, (f"{measured}: above the limit {max(limit, 0):.0%} (exact_max_share {max_share:g}, or the "
                       f"break-even 1 − {rho:.2f} if lower), so {f32} serves alone")
    cost = rho + share
    if cost * min_gain > 1.0:
        return False, f"{measured}: expected {cost:.2f}× {f32}'s time (needs ≤ {1 / min_gain:.2f}×), so {f32} serves"
    return True, (f"{measured}: expected {cost:.2f}× {f32}'s time, so bfloat16 serves and {f32} re-scores its "
                  f"top-{figures['top']} near-ties (the same top order as float32)")
