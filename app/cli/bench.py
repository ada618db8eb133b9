"""`kb bench rerank | search | ingest`: performance figures (`app.quality.bench`), a table or one JSON object.

User errors (a missing corpus, a model that cannot be loaded, bad options) print one line to stderr and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import EmbedderOpt, err, fail, guard, load_embedder, quiet_libraries, settings_for

bench_app = typer.Typer(help="Performance figures: rerank variants side by side, search latency by stage, ingest "
                             "throughput. Ratios matter more than absolute times on a shared machine.",
                        no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]
SAMPLE_CORPUS = Path(__file__).resolve().parents[2] / "data" / "samples" / "docs"


def _progress(as_json: bool):
    return (lambda msg: None) if as_json else (lambda msg: err.print(f"[dim]{msg}[/]", highlight=False))


def _split_ints(value: str, option: str) -> list[int]:
    try:
        out = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        fail(f"{option} {value!r}: give comma-separated whole numbers, e.g. {option} 10,50")
    if not out or min(out) < 1:
        fail(f"{option} {value!r}: every number must be at least 1")
    return out


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    Console().print(table)


@bench_app.command("rerank")
def rerank_command(
    reranker: Annotated[Optional[str], typer.Option("--reranker", help="cross-encoder folder or hub name "
                                                    "[default: settings reranker]")] = None,
    corpus: Annotated[Optional[list[Path]], typer.Option("--corpus", help="documents whose chunks are the "
                                                         "candidates [default: data/samples/docs]")] = None,
    k: Annotated[str, typer.Option("--k", help="candidate counts, comma-separated")] = "10,50",
    repeats: Annotated[int, typer.Option("--repeats", help="interleaved repetitions per variant and K")] = 3,
    variants: Annotated[str, typer.Option("--variants", help="comma-separated: naive (always), flagembedding "
                                          "(FlagEmbedding's FlagReranker, a second peer), defaults (the engine "
                                          "with no KB_RERANK_* setting), auto (float32: the faster exact backend), "
                                          "torch, torch-bf16, torch-bf16+exact, "
                                          "torch-bf16+exact-forced, onnx, onnx-int8, onnx-int8+exact, openvino "
                                          "(+exact: float32 re-scoring of top-10 near-ties, or float32 directly "
                                          "where that would redo too many; -forced: always re-score)")
                         ] = "naive,flagembedding,defaults,auto,torch,torch-bf16+exact",
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for the engine variants")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The engine's variants against two peers — the naive `CrossEncoder(model).predict(pairs)` and FlagEmbedding's
    `FlagReranker(model).compute_score(pairs)` — same model, same pairs, interleaved: latency, pairs/s, ratio to
    each peer, max |Δscore| and whether the top-10 order is the naive baseline's."""
    from rerank.engines.factory import is_disabled

    from ..components import reranker_options
    from ..quality.bench import PEERS, bench_rerank

    s = settings_for(reranker=reranker)
    if is_disabled(s.reranker):
        fail("kb bench rerank needs a reranker: pass --reranker with a cross-encoder folder or hub name")
    corpora = corpus if corpus else [SAMPLE_CORPUS]
    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    if "naive" not in chosen:
        chosen.insert(0, "naive")
    ks = _split_ints(k, "--k")
    with guard():
        options = reranker_options(s).replace(batch_size=batch_size, max_length=max_length, threads=threads)
        report = bench_rerank(s.reranker, corpora, ks, repeats, chosen, options=options,
                              progress=_progress(as_json))
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    peers = [p for p in PEERS if p in report["variants"]]
    rows = []
    for kk, row in report["by_k"].items():
        for v in report["variants"]:
            e = row[v]
            rows.append([f"K={kk} {v}", f"{e['latency_ms']['p50']:.0f}", f"{e['pairs_per_s']:.2f}",
                         *("-" if p == v else f"{e[f'ratio_vs_{p}']:.2f}×" for p in peers),
                         f"{e.get('max_abs_score_diff', 0.0):.2g}", "yes" if e.get("top10_identical", True) else "NO"])
    m = report["machine"]
    _table(f"{s.reranker}: {report['parameters'] or '?'} parameters, {m['cpu']}, {m['cores']} cores, load "
           f"{m['load_average'][0]}", ["variant", "p50 ms", "pairs/s", *(f"vs {p}" for p in peers), "max |Δscore|",
                                       "top-10 same"], rows)
    for kk, best in report["best"].items():
        if best is not None:
            err.print(f"K={kk}: fastest at the naive top-10 order: {best['variant']} ("
                      + ", ".join(f"{v:.2f}× {key.removeprefix('ratio_vs_')}" for key, v in best.items()
                                  if key.startswith("ratio_vs_")) + ")", highlight=False)
    for v, info in report["engine"].items():
        if info.get("backend_choice"):
            err.print(f"{v}: backend {info['backend']}: {info['backend_choice']['reason']}", highlight=False,
                      soft_wrap=True)
        if info.get("exact_choice"):
            done = info.get("exact_rescored") or {}
            err.print(f"{v}: last call: {info['exact_choice']['reason']} ({done.get('calls', 0)} calls by the "
                      f"reduced pass, {done.get('direct_calls', 0)} by float32 directly)", highlight=False,
                      soft_wrap=True)
        if info.get("warning"):
            err.print(f"{v}: {info['warning']}", highlight=False, soft_wrap=True)


@bench_app.command("search")
def search_command(
    sizes: Annotated[str, typer.Option("--sizes", help="corpus sizes in chunks, comma-separated")
                     ] = "1000,10000,100000",
    repeats: Annotated[int, typer.Option("--repeats", help="queries per size")] = 30,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="recall size K")] = None,
    embedder: Annotated[Optional[str], typer.Option("--embedder")] = None,
    reranker: Annotated[Optional[str], typer.Option("--reranker", help="folder, hub name or 'none'")] = None,
    as_json: JsonOpt = False,
) -> None:
    """End-to-end search latency by stage (embed, recall, rerank, total), P50/P95/P99, on synthetic corpora."""
    from ..components import index_opener, load_reranker, make_search
    from ..quality.bench import bench_search
    from ..services.search import QueryCache

    quiet_libraries()
    s = settings_for(embedder=embedder, reranker=reranker)
    if s.vector_store == "milvus":  # its synthetic corpora must never be written into the shared corpus
        fail("kb bench search builds synthetic corpora in FAISS and never writes into the shared Milvus corpus; run "
             "it with KB_VECTOR_STORE=faiss, and see docs/SCALING.md for latency on Milvus")
    size_list = _split_ints(sizes, "--sizes")
    emb = load_embedder(s)
    loaded = load_reranker(s)
    if loaded[1]:
        fail(loaded[1])
    with guard():
        report = bench_search(lambda index: make_search(s, emb, index, loaded, cache=QueryCache(0)), emb,
                              index_opener(s), size_list, repeats, s.top_k if top_k is None else top_k,
                              progress=_progress(as_json))
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    rows = [[f"{n:>7} ({row['dense_index']})", *(f"{row[st]['p50']:.1f} / {row[st]['p95']:.1f} / {row[st]['p99']:.1f}"
                                                for st in ("embed", "recall", "rerank", "total"))]
            for n, row in report["sizes"].items()]
    _table(f"search latency, ms p50 / p95 / p99 (K={report['top_k']}, reranker {report['reranker']})",
           ["chunks", "embed", "recall", "rerank", "total"], rows)


@bench_app.command("ingest")
def ingest_command(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="corpora (folders) [default: the sample documents, "
                                                          "data/samples/docs]")] = None,
    embedder: EmbedderOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest each corpus into a fresh temporary index: documents/s, chunks/s, the parse + chunk share, and OCR
    pages/s for scans and images."""
    from ..components import ocr_options
    from ..quality.bench import bench_ingest

    quiet_libraries()
    s = settings_for(embedder=embedder)
    corpora = list(paths) if paths else [SAMPLE_CORPUS]
    missing = [p for p in corpora if not p.exists()]
    if missing:
        fail(f"{missing[0]}: no such file or folder")
    emb = load_embedder(s)
    with guard():
        report = bench_ingest(corpora, emb, s.chunk_max_tokens, s.chunk_overlap, progress=_progress(as_json),
                              ocr=ocr_options(s))
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    rows = [[c, str(r["documents"]), str(r["chunks"]), f"{r['seconds']:.1f}", f"{r['documents_per_s']:.2f}",
             f"{r['chunks_per_s']:.1f}", f"{r['parse_chunk_share']:.0%}", str(r["ocr_pages"]),
             "-" if r["ocr_pages_per_s"] is None else f"{r['ocr_pages_per_s']:.2f}"]
            for c, r in report["corpora"].items()]
    _table(f"ingest with {report['embedder']}", ["corpus", "docs", "chunks", "s", "docs/s", "chunks/s",
                                                 "parse+chunk", "OCR pages", "OCR pages/s"], rows)


def register(app: typer.Typer) -> None:
    """Add the `bench` group to the main `kb` app."""
    app.add_typer(bench_app, name="bench")
