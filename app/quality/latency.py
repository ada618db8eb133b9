"""Latency summaries, one way everywhere: the Status page, `kb eval`, `kb tune`, `kb bench` and the load test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentiles(values_ms: Sequence[float], digits: int = 2) -> dict[str, float]:
    """p50 / p95 / p99 (linear interpolation, as numpy), mean, min and max of milliseconds, rounded to `digits`,
    and how many (`n`); {} for no values."""
    if len(values_ms) == 0:
        return {}
    a = np.asarray(values_ms, dtype=float)
    out = {f"p{p}": round(float(np.percentile(a, p)), digits) for p in (50, 95, 99)}
    return {**out, "mean": round(float(a.mean()), digits), "min": round(float(a.min()), digits),
            "max": round(float(a.max()), digits), "n": int(a.size)}
