"""`kb rerank` and `kb models list | check | parity`. The lead registers them with `register(app)`.

User errors (bad option values, missing files, a model that cannot be loaded) print one line to stderr and exit
with code 2, without a traceback. A failed `models check` prints its report and exits with code 1.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

models_app = typer.Typer(help="Local and cached models: list, validate a folder, CPU/GPU parity.",
                         no_args_is_help=True)


def _settings():
    from app.settings import get_settings

    return get_settings()


def _user_error(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _run_guarded(fn):
    """Call fn(); turn the errors a user can fix into one stderr line and exit code 2."""
    from rerank.errors import RerankError
    from retrieval.models import ModelNotAvailable

    try:
        return fn()
    except (RerankError, ModelNotAvailable, ValueError, FileNotFoundError, TypeError) as exc:
        raise _user_error(str(exc)) from None


def _read_candidates(file: Path) -> list[str]:
    if str(file) == "-":
        text = sys.stdin.read()
    else:
        if not file.is_file():
            raise _user_error(f"--candidates {file}: no such file; pass a text file with one candidate per line")
        text = file.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise _user_error(f"--candidates {file}: the file holds no candidates; write one candidate per line")
    return lines


def rerank_command(
    query: str = typer.Argument(..., help="the question"),
    candidates: Path = typer.Option(..., "--candidates", "-c", help="text file, one candidate per line ('-': stdin)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    reranker: str | None = typer.Option(None, "--reranker", help="hub name, local folder or models/<name>"),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    dtype: str | None = typer.Option(None, "--dtype", help="auto | float32 | float16 | bfloat16"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="pairs per forward pass (1-1024)"),
    max_length: int | None = typer.Option(None, "--max-length", help="tokens per pair (32-8192); longer passages "
                                          "are split into windows"),
    long_passage: str | None = typer.Option(None, "--long-passage", help="max | mean | first: window aggregation"),
) -> None:
    """Rerank candidates (one per line) for QUERY: rank, raw_score, score, band, text."""
    from rerank.factory import create_reranker, is_disabled
    from rerank.rank import rerank

    s = _settings()
    name = s.reranker if reranker is None else reranker
    if is_disabled(name):
        raise _user_error(f"--reranker {name!r}: kb rerank needs a reranker; pass --reranker with a hub name or a "
                          "folder (the setting KB_RERANKER is 'none')")
    texts = _read_candidates(candidates)
    engine = _run_guarded(lambda: create_reranker(
        name, device=s.device if device is None else device, dtype=s.reranker_dtype if dtype is None else dtype,
        batch_size=s.rerank_batch_size if batch_size is None else batch_size,
        max_length=s.rerank_max_length if max_length is None else max_length,
        long_passage=s.long_passage if long_passage is None else long_passage, models_dir=s.models_dir,
        backend=s.rerank_backend, quantize=s.rerank_quantize, threads=s.rerank_threads,
        exact_top=s.rerank_exact_top))
    try:
        _run_guarded(engine.load)
    except typer.Exit:
        typer.echo(f"RERANKER NOT LOADED: {name!r} — no scores were computed.", err=True)
        raise
    started = time.perf_counter()
    scored = _run_guarded(lambda: rerank(query, texts, engine))
    elapsed = (time.perf_counter() - started) * 1000
    info = engine.info()
    if as_json:
        typer.echo(json.dumps({
            "query": query, "reranker": name, "device": info["device"], "dtype": info["dtype"],
            "timings_ms": {"rerank": round(elapsed, 1)},
            "results": [{"rank": x.rank, "index": x.index, "raw_score": x.raw_score, "score": x.score,
                         "band": x.band, "text": x.text} for x in scored]}, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{query}  —  {name} on {info['device']}/{info['dtype']}, {elapsed:.0f} ms")
    for col, justify in (("rank", "right"), ("raw_score", "right"), ("score", "right"), ("band", "left"),
                         ("text", "left")):
        table.add_column(col, justify=justify)
    colours = {"strong": "green", "review": "yellow", "weak": "red"}
    for x in scored:
        text = x.text if len(x.text) <= 160 else x.text[:157] + "..."
        table.add_row(str(x.rank), f"{x.raw_score:.4f}", f"{x.score:.4f}",
                      f"[{colours[x.band]}]{x.band}[/]", text)
    Console().print(table)


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="print JSON"),
                no_cache: bool = typer.Option(False, "--no-cache", help="only folders under models/")) -> None:
    """Folders under models/ and hub models in the HF cache; * marks the active reranker / embedder."""
    from rerank.registry import list_models

    s = _settings()
    entries = list_models(s.models_dir, {"reranker": s.reranker, "embedder": s.embedder}, include_cache=not no_cache)
    if as_json:
        typer.echo(json.dumps({"models_dir": str(s.models_dir), "active": {"reranker": s.reranker,
                                                                          "embedder": s.embedder},
                               "models": [e.to_dict() for e in entries]}, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models (active reranker: {s.reranker}; embedder: {s.embedder})")
    for col in ("", "name", "kind", "architecture", "labels", "MB", "origin", "path"):
        table.add_column(col)
    for e in entries:
        table.add_row("*" if e.active_as else "", e.name + (f" ({e.active_as})" if e.active_as else ""), e.kind,
                      e.architecture or "-", "-" if e.num_labels is None else str(e.num_labels), f"{e.size_mb:.0f}",
                      e.origin, e.path)
    Console().print(table)
    if not entries:
        typer.echo(f"no models under {s.models_dir}/ or in the Hugging Face cache", err=True)


@models_app.command("check")
def models_check(path: Path = typer.Argument(..., help="model folder to validate"),
                 golden: Path | None = typer.Option(None, "--golden", help="JSONL of {query, passage, label}: "
                                                    "compare with the current reranker"),
                 current: str | None = typer.Option(None, "--current", help="baseline for --golden (default: the "
                                                    "reranker setting)"),
                 device: str = typer.Option("cpu", "--device", help="device for the smoke score"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Validate a cross-encoder folder before it serves (exit 1 when a check fails or --golden shows a regression)."""
    from rerank.check import check_model

    s = _settings()
    if not path.exists():
        raise _user_error(f"PATH {path}: no such folder; pass the folder holding config.json and the weights")
    report = _run_guarded(lambda: check_model(path, golden=golden, current=s.reranker if current is None else current,
                                              models_dir=s.models_dir, device=device,
                                              max_length=s.rerank_max_length, batch_size=s.rerank_batch_size))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
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


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


@models_app.command("parity")
def models_parity(reranker: str | None = typer.Option(None, "--reranker", help="default: the reranker setting"),
                  pairs: Path | None = typer.Option(None, "--pairs", help="JSONL {query, passage} or TSV"),
                  as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Score the same pairs on CPU float32 and GPU float16; report the largest difference and rank changes."""
    from rerank.parity import load_pairs, parity

    s = _settings()
    name = s.reranker if reranker is None else reranker
    loaded = None if pairs is None else _run_guarded(lambda: load_pairs(pairs))
    report = _run_guarded(lambda: parity(name, loaded, models_dir=s.models_dir, max_length=s.rerank_max_length,
                                         batch_size=s.rerank_batch_size))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    typer.echo(f"{name}: {report.message}")
    if report.gpu_available:
        typer.echo(f"{report.n_pairs} pairs; max raw diff {report.max_raw_diff:.5f}; max score diff "
                   f"{report.max_score_diff:.5f}; rank changes {report.rank_changes}; kendall tau "
                   f"{_fmt(report.kendall_tau)}")


def register(app: typer.Typer) -> None:
    """Add `rerank` and the `models` group to the main `kb` app."""
    app.command("rerank")(rerank_command)
    app.add_typer(models_app, name="models")
