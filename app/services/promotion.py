"""Promote, roll back, start or end a canary or shadow: the one implementation behind `kb models ...` and the
Status page's buttons. Each takes the rollout's lock in the shared database for its whole run (a promotion's gate
included; one change at a time across processes and machines), writes the new state in one step, and records the
change (or the refusal) in the audit log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rerank.errors import RerankerParameterError
from rerank.protocol import Reranker
from rerank.types import RerankerOptions
from rerank.validation.check import check_model
from rerank.validation.gate import GateLimits, GateReport, gate

from ..errors import KbError
from ..identity import Caller
from .audit import AuditLog
from .rollout import Release, RolloutState, RolloutStore, Trial, TrialKind, model_id, now, weights_digest


@dataclass(frozen=True)
class Promotion:
    report: GateReport
    state: RolloutState | None  # the new state when the candidate passed; None when refused (nothing changed)


def _folder(path: str | Path) -> str:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise KbError("not_found", f"{path}: no such folder; pass the folder holding the model's config.json, "
                                   "tokenizer and weights (e.g. models/reranker_zh_v2)")
    return model_id(str(folder))


def promote(store: RolloutStore, path: str | Path, default: str, who: Caller, audit: AuditLog | None = None, *,
            load: Callable[[str, RerankerOptions], Reranker], golden: str | Path | None = None,
            options: RerankerOptions | None = None, limits: GateLimits | None = None) -> Promotion:
    """Run the gate on the folder `path` against the model serving now (`default`: the `reranker` setting, when no
    promotion is on record) and, only when it passes, make it the serving reranker. The serving model's folder
    may be promoted again when its weights changed since its promotion (`check_promoted_weights` refuses to load
    it): its new weights are gated against the model that served before it, and replace its entry. `load` loads
    the serving model for the gate's comparison (`app.components.load_unshared`)."""
    model = _folder(path)
    with store.locked():
        state = store.read()
        serving = state.serving_model(default)
        if model == serving:
            if state.current is None or state.current.digest in (None, weights_digest(model)):
                raise KbError("conflict", f"{model} is already the serving reranker")
            state = replace(state, serving=state.serving[:-1])  # its changed weights: a new candidate
            serving = state.serving_model(default)
        try:
            report = gate(model, serving, golden, options, limits, load=load)
        except RerankerParameterError as exc:  # the golden file: the caller's to fix
            raise KbError("validation", str(exc)) from None
        if not report.passed:
            if audit is not None:
                audit.record(who, "reranker promote", "refused", model=model, reasons=report.reasons)
            return Promotion(report, None)
        new = state.promoted(Release(model, now(), who.who, weights_digest(model), report.summary()), default)
        store.write(new)
    if audit is not None:
        audit.record(who, "reranker promote", model=model, previous=serving, digest=new.current.digest)
    return Promotion(report, new)


def rollback(store: RolloutStore, default: str, who: Caller, audit: AuditLog | None = None) -> RolloutState:
    """The model promoted before the current one serves again. KbError conflict when nothing was promoted."""
    with store.locked():
        state = store.read()
        new = state.rolled_back(now(), who.who, default)
        store.write(new)
    if audit is not None:
        audit.record(who, "reranker rollback", model=new.serving_model(default), previous=state.current.model)
    return new


def _checked(model: str, options: RerankerOptions | None) -> None:
    report = check_model(model, options=options)
    if not report.ok:
        reasons = "; ".join(f"{i.name}: {i.message} (fix: {i.fix})" for i in report.failures)
        raise KbError("unprocessable", f"{model} cannot serve: {reasons}")


def start_trial(kind: TrialKind, store: RolloutStore, path: str | Path, default: str, who: Caller,
                audit: AuditLog | None = None, options: RerankerOptions | None = None,
                share: float | None = None) -> RolloutState:
    """Let the folder `path` run as the canary (reranking `share` of searches) or the shadow (scoring every search
    beside the serving model, for comparison). The folder must pass `kb models check` first."""
    model = _folder(path)
    with store.locked():
        state = store.read()
        if model == state.serving_model(default):
            raise KbError("conflict", f"{model} is the serving reranker already; a {kind} is another model")
        _checked(model, options)
        new = state.with_trial(kind, Trial(model, now(), who.who, share))
        store.write(new)
    if audit is not None:
        audit.record(who, f"reranker {kind}", model=model, **({"share": share} if share is not None else {}))
    return new


def stop_trial(kind: TrialKind, store: RolloutStore, who: Caller, audit: AuditLog | None = None) -> RolloutState:
    """End the canary or the shadow. KbError conflict when none is running."""
    with store.locked():
        state = store.read()
        new = state.without_trial(kind, now(), who.who)
        store.write(new)
    if audit is not None:
        audit.record(who, f"reranker {kind} off", model=getattr(state, kind).model)
    return new


def start_canary(store: RolloutStore, path: str | Path, share: float, default: str, who: Caller,
                 audit: AuditLog | None = None, options: RerankerOptions | None = None) -> RolloutState:
    """Let the folder `path` rerank `share` (0 < share < 1) of searches, chosen per query text."""
    if not 0 < share < 1:
        raise KbError("validation", f"--share must be between 0 and 1 (exclusive); got {share}")
    return start_trial("canary", store, path, default, who, audit, options, share)


def stop_canary(store: RolloutStore, who: Caller, audit: AuditLog | None = None) -> RolloutState:
    return stop_trial("canary", store, who, audit)


def start_shadow(store: RolloutStore, path: str | Path, default: str, who: Caller, audit: AuditLog | None = None,
                 options: RerankerOptions | None = None) -> RolloutState:
    """Let the folder `path` score every search beside the serving model, off the critical path."""
    return start_trial("shadow", store, path, default, who, audit, options)


def stop_shadow(store: RolloutStore, who: Caller, audit: AuditLog | None = None) -> RolloutState:
    return stop_trial("shadow", store, who, audit)
