"""`kb models promote | rollback | history | canary | shadow`: which reranker serves, and trying a new one on real
traffic first. Running APIs and apps follow each change within `models_reload_s` seconds, without a restart.
A promotion refused by its gate prints why and exits with code 1; nothing changes then."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import IndexOpt, JsonOpt, err, guard, operator, out, settings_for


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _parts(index: Path | None):
    from ..components import audit_log, reranker_options, rollout_store

    s = settings_for(index)
    return s, rollout_store(s), audit_log(s), reranker_options(s)


def _print_gate(report) -> None:
    for item in report.check.items:
        if item.status == "fail":
            typer.echo(f"[FAIL] {item.name}: {item.message}\n       fix: {item.fix}")
    g = report.golden
    if g is not None:
        cur = "-" if g.current_agreement is None else f"{g.current_agreement:.3f}"
        new = "-" if g.candidate_agreement is None else f"{g.candidate_agreement:.3f}"
        typer.echo(f"golden {g.file}: {g.n_pairs} pairs; agreement with the labels: candidate {new}, serving {cur}; "
                   f"verdict {g.verdict}")
    c = report.comparison
    if c is not None:
        tau = "-" if c.kendall_tau is None else f"{c.kendall_tau:.3f}"
        typer.echo(f"against {report.serving} on the {c.on} ({c.pairs} pairs, {c.queries} queries): top-{c.top_n} "
                   f"overlap {c.top_overlap:.2f}, same top-{c.top_n} order {c.same_top_order:.0%}, kendall tau {tau}, "
                   f"score shift mean {c.mean_score_shift:.3f} max {c.max_score_shift:.3f}")
    for note in report.notes:
        typer.echo(f"note: {note}")


def add_commands(models_app: typer.Typer) -> None:
    @models_app.command("promote")
    def promote(path: Annotated[Path, typer.Argument(help="the model folder to serve")],
                golden: Annotated[Optional[Path], typer.Option(
                    "--golden", help="JSONL of {query, passage, label}: the candidate must not agree less with the "
                                     "labels than the serving model")] = None,
                top_n: Annotated[int, typer.Option("--top-n", min=1, help="compare each query's top N")] = 5,
                min_overlap: Annotated[float, typer.Option(
                    "--min-overlap", min=0.0, max=1.0, help="least mean share of the top N both agree on")] = 0.6,
                max_shift: Annotated[float, typer.Option(
                    "--max-shift", min=0.0, max=1.0, help="largest mean score change (0..1 scale) tolerated")] = 0.25,
                tolerance: Annotated[float, typer.Option(
                    "--tolerance", min=0.0, max=1.0, help="golden agreement may drop at most this much")] = 0.02,
                index: IndexOpt = None, as_json: JsonOpt = False) -> None:
        """Check PATH (folder check, golden regression, comparison with the serving model) and, only if it
        passes, make it the serving reranker."""
        from rerank.validation.gate import GateLimits

        from ..components import load_unshared
        from ..services.promotion import promote as run

        s, store, audit, options = _parts(index)
        with guard():
            result = run(store, path, s.reranker, operator(), audit, golden=golden,
                         options=options.replace(device="cpu", dtype="auto", backend="torch", quantize=False),
                         limits=GateLimits(top_n=top_n, min_top_overlap=min_overlap,
                                           max_score_shift=max_shift, tolerance=tolerance), load=load_unshared)
        if as_json:
            print(json.dumps({**result.report.to_dict(), "promoted": result.state is not None}, ensure_ascii=False))
        else:
            _print_gate(result.report)
            if result.state is None:
                for reason in result.report.reasons:
                    typer.echo(f"refused: {reason}")
                typer.echo(f"NOT promoted: {result.report.serving or s.reranker} keeps serving")
            else:
                typer.echo(f"promoted: {result.state.current.model} now serves (was "
                           f"{result.report.serving or 'none'}); running APIs and apps follow within "
                           f"{s.models_reload_s:g} s; `kb models rollback` undoes it")
        if result.state is None:
            raise typer.Exit(1)

    @models_app.command("rollback")
    def rollback(index: IndexOpt = None) -> None:
        """Serve again the model that served before the last promotion."""
        from ..services.promotion import rollback as run

        s, store, audit, _ = _parts(index)
        with guard():
            state = run(store, s.reranker, operator(), audit)
        typer.echo(f"rolled back: {state.serving_model(s.reranker)} serves again (was {state.history[-1]['previous']})")

    @models_app.command("history")
    def history(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
        """What serves now, the canary and shadow, and every promotion, rollback and trial, oldest first."""
        s, store, _, _ = _parts(index)
        with guard():
            state = store.read()
        if as_json:
            data = state.to_dict()
            print(json.dumps({"serving": state.serving_model(s.reranker),
                              "source": "promoted" if state.current else "setting", "promoted": data["serving"],
                              "canary": data["canary"], "shadow": data["shadow"], "history": data["history"],
                              "store": store.where}, ensure_ascii=False))
            return
        from rich.table import Table

        cur = state.current
        out.print(f"serving: {state.serving_model(s.reranker)} "
                  f"({'promoted ' + _when(cur.at) + ' by ' + cur.by if cur else 'the reranker setting'})",
                  highlight=False, soft_wrap=True)
        if state.canary:
            out.print(f"canary: {state.canary.model} on {state.canary.share:.0%} of searches since "
                      f"{_when(state.canary.at)}", highlight=False, soft_wrap=True)
        if state.shadow:
            out.print(f"shadow: {state.shadow.model} since {_when(state.shadow.at)}", highlight=False, soft_wrap=True)
        if not state.history:
            err.print(f"no promotion on record in {store.where}", highlight=False)
            return
        table = Table(title=f"history ({store.where})")
        for col in ("when", "action", "model", "previous", "by", "checks"):
            table.add_column(col)
        for h in state.history:
            checks = h.get("checks") or {}
            c = checks.get("comparison") or {}
            g = checks.get("golden") or {}
            summary = " ".join(x for x in (
                f"overlap {c['top_overlap']:.2f} shift {c['mean_score_shift']:.3f}" if c else "",
                f"golden {g.get('verdict')}" if g else "", f"share {h['share']:.0%}" if h.get("share") else "") if x)
            table.add_row(_when(h["at"]), h["action"], h.get("model") or "-", h.get("previous") or "-", h["by"],
                          summary or "-")
        out.print(table)

    @models_app.command("canary")
    def canary(path: Annotated[Optional[Path], typer.Argument(help="the candidate model folder")] = None,
               share: Annotated[float, typer.Option("--share", help="share of searches (per query text) it "
                                                    "reranks, between 0 and 1")] = 0.1,
               off: Annotated[bool, typer.Option("--off", help="end the canary")] = False,
               index: IndexOpt = None) -> None:
        """Let PATH rerank a share of searches (the same question always goes to the same model)."""
        from ..services.promotion import start_canary, stop_canary

        s, store, audit, options = _parts(index)
        with guard():
            if off:
                stop_canary(store, operator(), audit)
                typer.echo("canary ended: every search is reranked by the serving model")
                return
            if path is None:
                raise typer.BadParameter("give the candidate folder, or --off to end the canary")
            state = start_canary(store, path, share, s.reranker, operator(), audit,
                                 options.replace(device="cpu", dtype="auto", backend="torch", quantize=False))
        typer.echo(f"canary: {state.canary.model} reranks {share:.0%} of searches; results name the model that "
                   "scored them; `kb analytics` compares thumbs per model")

    @models_app.command("shadow")
    def shadow(path: Annotated[Optional[Path], typer.Argument(help="the candidate model folder")] = None,
               off: Annotated[bool, typer.Option("--off", help="end the shadow")] = False,
               index: IndexOpt = None) -> None:
        """Let PATH score every search in the background, for comparison only (never shown, never waited for)."""
        from ..services.promotion import start_shadow, stop_shadow

        s, store, audit, options = _parts(index)
        with guard():
            if off:
                stop_shadow(store, operator(), audit)
                typer.echo("shadow ended")
                return
            if path is None:
                raise typer.BadParameter("give the candidate folder, or --off to end the shadow")
            state = start_shadow(store, path, s.reranker, operator(), audit,
                                 options.replace(device="cpu", dtype="auto", backend="torch", quantize=False))
        typer.echo(f"shadow: {state.shadow.model} scores every search beside the serving model; agreement figures "
                   "on the Status page, in /info and on /metrics")
