"""`kb models list | check PATH | parity`: what is available locally, whether a model folder can serve, and how CPU
float32 and GPU float16 scores compare. A failed `models check` prints its report and exits with code 1.
`promote | rollback | history | canary | shadow` (which reranker serves) are in `rollout.py`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import err, fail, guard, out, settings_for

models_app = typer.Typer(help="Local and cached models: list, validate a folder, CPU/GPU parity; promote, roll "
                         "back, canary and shadow the serving reranker.",
                         no_args_is_help=True)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="print JSON"),
                no_cache: bool = typer.Option(False, "--no-cache", help="only folders under models/")) -> None:
    """Folders under models/ and hub models in the HF cache; * marks the active reranker / embedder."""
    from rerank.registry import list_models

    s = settings_for()
    entries = list_models(s.models_dir, {"reranker": s.reranker, "embedder": s.embedder}, include_cache=not no_cache)
    if as_json:
        print(json.dumps({"models_dir": str(s.models_dir), "active": {"reranker": s.reranker, "embedder": s.embedder},
                          "models": [e.to_dict() for e in entries]}, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(title=f"models (active reranker: {s.reranker}; embedder: {s.embedder})")
    for col in ("", "name", "kind", "architecture", "labels", "MB", "origin", "path"):
        table.add_column(col)
    for e in entries:
        table.add_row("*" if e.active_as else "", e.name + (f" ({e.active_as})" if e.active_as else ""), e.kind,
                      e.architecture or "-", "-" if e.num_labels is None else str(e.num_labels), f"{e.size_mb:.0f}",
                      e.origin, e.path)
    out.print(table)
    if not entries:
        err.print(f"no models under {s.models_dir}/ or in the Hugging Face cache", highlight=False)


@models_app.command("check")
def models_check(path: Path = typer.Argument(..., help="model folder to validate"),
                 golden: Path | None = typer.Option(None, "--golden", help="JSONL of {query, passage, label}: "
                                                    "compare with the current reranker"),
                 current: str | None = typer.Option(None, "--current", help="baseline for --golden (default: the "
                                                    "reranker setting)"),
                 device: str = typer.Option("cpu", "--device", help="device for the smoke score"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Validate a cross-encoder folder before it serves (exit 1 when a check fails or --golden shows a regression)."""
    from rerank.validation.check import check_model

    from ..components import reranker_options

    s = settings_for()
    if not path.exists():
        fail(f"PATH {path}: no such folder; pass the folder holding config.json and the weights")
    with guard():
        options = reranker_options(s).replace(device=device, dtype="auto", backend="torch", quantize=False)
        report = check_model(path, golden=golden, current=s.reranker if current is None else current,
                             options=options)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for item in report.items:
            mark = {"ok": "ok  ", "fail": "FAIL", "skipped": "skip"}[item.status]
            line = f"[{mark}] {item.name}: {item.message}"
            if item.status == "fail":
                line += f"\n       file: {item.file}\n       fix:  {item.fix}"
            typer.echo(line)
        g = report.golden
        if g is not None:
            typer.echo(f"golden {g.file}: {g.n_pairs} pairs, {g.n_queries} queries; agreement new="
                       f"{_fmt(g.candidate_agreement)} current={_fmt(g.current_agreement)}; kendall tau="
                       f"{_fmt(g.kendall_tau)}; rank changes={g.rank_changes}; score shift mean="
                       f"{_fmt(g.mean_score_shift)} max={_fmt(g.max_score_shift)}; verdict: {g.verdict}")
            if g.current_error:
                typer.echo(f"note: {g.current_error}")
        typer.echo("OK: the model can serve" if report.ok else "NOT OK: fix the failures above before serving")
    if not report.ok:
        raise typer.Exit(1)


@models_app.command("parity")
def models_parity(reranker: str | None = typer.Option(None, "--reranker", help="default: the reranker setting"),
                  pairs: Path | None = typer.Option(None, "--pairs", help="JSONL {query, passage} or TSV"),
                  as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Score the same pairs on CPU float32 and GPU float16; report the largest difference and rank changes."""
    from rerank.validation.parity import load_pairs, parity

    from ..components import reranker_options

    s = settings_for(reranker=reranker)
    with guard():
        loaded = None if pairs is None else load_pairs(pairs)
        report = parity(s.reranker, loaded, reranker_options(s).replace(backend="torch", quantize=False))
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    typer.echo(f"{s.reranker}: {report.message}")
    if report.gpu_available:
        typer.echo(f"{report.n_pairs} pairs; max raw diff {report.max_raw_diff:.5f}; max score diff "
                   f"{report.max_score_diff:.5f}; rank changes {report.rank_changes}; kendall tau "
                   f"{_fmt(report.kendall_tau)}")


def register(app: typer.Typer) -> None:
    from .rollout import add_commands

    add_commands(models_app)
    app.add_typer(models_app, name="models")
