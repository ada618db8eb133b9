"""`kb rerank "QUERY" --candidates FILE`: score one candidate per line with the reranker, like the playground
(no index needed)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from .common import err, fail, guard, out, settings_for


def _read_candidates(file: Path) -> list[str]:
    if str(file) == "-":
        text = sys.stdin.read()
    else:
        if not file.is_file():
            fail(f"--candidates {file}: no such file; pass a text file with one candidate per line")
        text = file.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        fail(f"--candidates {file}: the file holds no candidates; write one candidate per line")
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
    from rerank.engines.factory import is_disabled  # cheap: the arguments are checked before heavy imports

    s = settings_for(reranker=reranker)
    name = s.reranker
    if is_disabled(name):
        fail(f"--reranker {name!r}: kb rerank needs a reranker; pass --reranker with a hub name or a folder (the "
             "setting KB_RERANKER is 'none')")
    texts = _read_candidates(candidates)
    from rerank.rank import rerank

    from ..components import open_reranker, reranker_options

    with guard():
        options = reranker_options(s).replace(device=device, dtype=dtype, batch_size=batch_size,
                                              max_length=max_length, long_passage=long_passage)
    try:
        with guard():
            engine = open_reranker(s, name, options)
    except typer.Exit:
        err.print(f"RERANKER NOT LOADED: {name!r} — no scores were computed.", highlight=False, soft_wrap=True)
        raise
    started = time.perf_counter()
    with guard():
        scored = rerank(query, texts, engine)
    elapsed = (time.perf_counter() - started) * 1000
    info = engine.info()
    if as_json:
        print(json.dumps({
            "query": query, "reranker": name, "device": info.device, "dtype": info.dtype,
            "timings_ms": {"rerank": round(elapsed, 1)},
            "results": [{"rank": x.rank, "index": x.index, "raw_score": x.raw_score, "score": x.score,
                         "band": x.band, "text": x.text} for x in scored]}, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(title=f"{query}  —  {name} on {info.device}/{info.dtype}, {elapsed:.0f} ms")
    for col, justify in (("rank", "right"), ("raw_score", "right"), ("score", "right"), ("band", "left"),
                         ("text", "left")):
        table.add_column(col, justify=justify)
    colours = {"strong": "green", "review": "yellow", "weak": "red"}
    for x in scored:
        text = x.text if len(x.text) <= 160 else x.text[:157] + "..."
        table.add_row(str(x.rank), f"{x.raw_score:.4f}", f"{x.score:.4f}", f"[{colours[x.band]}]{x.band}[/]", text)
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("rerank")(rerank_command)
