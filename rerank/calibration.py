"""Calibration of reranker scores: map a raw logit to the probability that the passage answers the question.

A cross-encoder's sigmoid is not a probability: bge-reranker puts most relevant passages between 0.2 and 0.9 and
fine-tuned models drift. Fitted on labelled (raw score, relevant?) pairs from `kb tune`, a calibrator makes
"0.8" mean "about 8 in 10 passages scored like this answer the question", so a threshold and the strong/review/
weak bands mean the same thing whatever the model.

- Platt scaling (Platt, 1999): p = sigmoid(a·raw + b), fitted by maximum likelihood with Platt's smoothed targets
  ((N₊+1)/(N₊+2) and 1/(N₋+2)) so that separable data does not push `a` to infinity. Two parameters: the right
  choice for a few hundred pairs. `a` is constrained to ≥ 0, so the calibrated score never decreases as the raw
  score rises; a = 0 says the scores carry no information (every passage gets the base rate).
- Isotonic regression (pool-adjacent-violators, `scipy.optimize.isotonic_regression`): any non-decreasing step
  function, interpolated linearly between breakpoints. Needs more pairs (thousands) and can overfit small sets.

scipy is already a dependency (ranx and sentence-transformers need it) and has both pieces (an optimizer, PAVA);
scikit-learn would add a large install for two estimators, so it is not used.

Calibrators are saved as JSON (`save()` / `load_calibrator()`); `apply()` maps raw logits, vectorised.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ingest.files import atomic_write

Method = Literal["platt", "isotonic"]
METHODS = ("platt", "isotonic")
FORMAT = "kb-calibration"
VERSION = 1


@dataclass(frozen=True)
class Calibrator:
    """A fitted map from raw reranker logits to probabilities of relevance, non-decreasing in the raw score.

    `params`: ``{"a", "b"}`` for Platt; ``{"x", "y"}`` (breakpoints, both non-decreasing) for isotonic.
    `info`: what it was fitted on (reranker, dataset, pairs, positives); informative only.
    """

    method: Method
    params: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def apply(self, raw: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
        """Calibrated probability for one raw logit (a float back) or many (an array back)."""
        x = np.asarray(raw, dtype=np.float64)
        if self.method == "platt":
            from scipy.special import expit

            out = expit(self.params["a"] * x + self.params["b"])
        else:
            out = np.interp(x, self.params["x"], self.params["y"])  # clamps outside the fitted range
        return float(out) if out.ndim == 0 else out

    @property
    def informative(self) -> bool:
        """False when the fit found no relation between raw score and relevance (a constant calibrated score)."""
        if self.method == "platt":
            return self.params["a"] > 1e-9
        return self.params["y"][0] < self.params["y"][-1]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "method": self.method, "params": self.params,
                "info": self.info}

    def dumps(self) -> str:
        """The calibrator as the JSON text `save` writes."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the calibrator as JSON atomically (parent folders created; an existing file keeps its mode)."""
        return atomic_write(path, self.dumps())


def _check_pairs(raw: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, ...]:
    x = np.asarray(raw, dtype=np.float64).ravel()
    y = (np.asarray(labels).ravel() > 0).astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"scores and labels must have the same length; got {x.size} scores, {y.size} labels")
    if not np.all(np.isfinite(x)):
        raise ValueError("scores must be finite numbers (raw reranker logits); found NaN or infinity")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(f"calibration needs both relevant and non-relevant pairs; got {n_pos} relevant of "
                         f"{y.size}: label more queries, or recall deeper (a larger top_k)")
    return x, y


def fit_platt(raw: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
              info: dict[str, Any] | None = None) -> Calibrator:
    """Platt scaling on raw logits; labels > 0 are relevant. Raises ValueError without both kinds of label."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    x, y = _check_pairs(raw, labels)
    n_pos, n_neg = y.sum(), y.size - y.sum()
    t = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    scale = float(np.std(x)) or 1.0  # optimise on standardised scores: well conditioned for any logit range
    xs = (x - float(np.mean(x))) / scale

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = w[0] * xs + w[1]
        nll = -float(np.sum(t * log_expit(z) + (1 - t) * log_expit(-z)))
        g = expit(z) - t
        return nll, np.array([float(g @ xs), float(g.sum())])

    # Start from "no information" (a = 0, the base rate): constant scores stay there, any signal moves `a`.
    start = np.array([0.0, math.log(t.mean() / (1 - t.mean()))])
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(0.0, None), (None, None)])
    a = float(res.x[0]) / scale
    b = float(res.x[1]) - a * float(np.mean(x))
    return Calibrator("platt", {"a": a, "b": b}, _info(info, x, y))


def fit_isotonic(raw: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                 info: dict[str, Any] | None = None) -> Calibrator:
    """Isotonic (non-decreasing) regression of relevance on raw logits; equal scores are pooled first."""
    from scipy.optimize import isotonic_regression

    x, y = _check_pairs(raw, labels)
    ux, inverse = np.unique(x, return_inverse=True)
    weights = np.bincount(inverse).astype(np.float64)
    means = np.bincount(inverse, weights=y) / weights
    fitted = isotonic_regression(means, weights=weights, increasing=True).x
    # Keep the two ends of every constant block: the same function with far fewer breakpoints.
    keep = np.ones(ux.size, dtype=bool)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return Calibrator("isotonic", {"x": ux[keep].tolist(), "y": fitted[keep].tolist()}, _info(info, x, y))


def fit_calibrator(method: str, raw: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                   info: dict[str, Any] | None = None) -> Calibrator:
    """`fit_platt` or `fit_isotonic` by name."""
    if method == "platt":
        return fit_platt(raw, labels, info)
    if method == "isotonic":
        return fit_isotonic(raw, labels, info)
    raise ValueError(f"calibration method must be one of {', '.join(METHODS)}; got {method!r}")


def _info(info: dict[str, Any] | None, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return {**(info or {}), "pairs": int(x.size), "positives": int(y.sum()),
            "fitted": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def load_calibrator(path: str | Path) -> Calibrator:
    """Read a calibrator written by `Calibrator.save()`. Raises ValueError naming the file and the bad field."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"calibration file {path} does not exist; fit one with `kb tune --write`, or unset "
                         "KB_CALIBRATION / `calibration` in the config file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"calibration file {path} is not valid JSON ({exc}); fit it again with `kb tune`") from exc
    return calibrator_from_dict(data, f"calibration file {path}")


def calibrator_from_dict(data: Any, where: str) -> Calibrator:
    """The calibrator in `data` (`Calibrator.to_dict()`). Raises ValueError naming `where` and the bad field."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{where}: 'format' must be {FORMAT!r}; is this a file from `kb tune`?")
    method, params = data.get("method"), data.get("params")
    if method not in METHODS:
        raise ValueError(f"{where}: 'method' must be one of {', '.join(METHODS)}; got {method!r}")
    if not isinstance(params, dict):
        raise ValueError(f"{where}: 'params' must be an object")
    if method == "platt":
        a, b = params.get("a"), params.get("b")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (a, b)) or a < 0:
            raise ValueError(f"{where}: Platt needs finite numbers 'a' >= 0 and 'b'; got a={a!r}, "
                             f"b={b!r}")
        params = {"a": float(a), "b": float(b)}
    else:
        try:
            xs, ys = np.asarray(params["x"], dtype=np.float64), np.asarray(params["y"], dtype=np.float64)
            ok = xs.ndim == ys.ndim == 1 and xs.size == ys.size >= 1 and bool(np.all(np.isfinite(xs)))
            ok = ok and not np.any(np.diff(xs) < 0) and not np.any(np.diff(ys) < 0) and 0 <= ys.min() <= ys.max() <= 1
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{where}: isotonic needs lists 'x' and 'y' of equal length, both "
                             "non-decreasing, y within 0..1")
        params = {"x": xs.tolist(), "y": ys.tolist()}
    return Calibrator(method, params, data.get("info") or {})
